/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared between bpf/export.bpf.c and loader/counters (via bpf2go): the exporter's counters.
 * Go reads them through the twins bpf2go generates from these declarations. */
#ifndef SOCKSCOPE_EXPORT_H
#define SOCKSCOPE_EXPORT_H

#define NBUCKETS 18 /* connect-duration bounds; the counts have one more, above the last */
#define NTRANS 32   /* transitions counted in place; trans_slot (from Go) maps from<<4|to to one, 0 = rare */
#define NCONN 16    /* connect outcomes in place: [0] success, errno_slot (from Go) maps errnos to 1..15, 0 = rare */
#define NERRNO 256
#define NSTATES 16  /* TCP state numbers, include/net/tcp_states.h */

/* One namespace's counters, a per-CPU array element indexed by the namespace's slot: a transition
 * costs an array load and an increment. Go zeroes an element before it gives its slot to a
 * namespace, and sums the CPUs at a scrape. */
struct netns_counters {
	__u64 transitions[NTRANS];
	__u64 connects[NCONN];
	__u64 duration[NBUCKETS + 1];
	__u64 duration_sum_ns;
	__u64 retransmits;
	__u64 resets_sent;
	__u64 resets_received;
	/* Socket gauges: moves of full sockets into and out of each state (the kernel's numbers;
	 * CLOSE, TIME_WAIT and NEW_SYN_RECV are never counted). Both only grow, so Go knows that no
	 * socket of the namespace moved between two reads when neither changed; a state's sockets are
	 * a walk's count plus the moves in and less the moves out since that walk. */
	__u64 gauge_in[NSTATES];
	__u64 gauge_out[NSTATES];
};

/* What has no place in netns_counters: unusual transitions and errnos, counted exactly here. */
enum rare_kind {
	RARE_TRANSITION = 1, /* arg = from << 8 | to */
	RARE_CONNECT = 2,    /* arg = errno */
};

struct rare_key {
	__u32 slot;
	__u16 kind;
	__u16 arg;
};

/* The start of a connect in progress, in a direct-mapped table indexed by a hash of the socket's
 * address: two stores instead of a hash update and delete. */
struct handshake {
	__u64 sk;
	__u64 ts;
};

/* A listening socket of a counted namespace, in the listeners table (keyed by its address):
 * its namespace, and its request sockets (handshakes in SYN_RECV that have no full socket yet)
 * as read_requests last read them. */
struct listener_entry {
	__u32 netns;
	__u32 requests;
};

#endif
