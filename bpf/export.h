/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared between bpf/export.bpf.c and loader/export.go (via bpf2go): the exporter's counters.
 * loader/layout_test.go guards the Go twins' sizes. */
#ifndef SOCKSCOPE_EXPORT_H
#define SOCKSCOPE_EXPORT_H

#define NBUCKETS 18 /* connect-duration bounds; the counts have one more, above the last */
#define NTRANS 32   /* transitions counted in place; trans_slot (from Go) maps from<<4|to to one, 0 = rare */
#define NCONN 16    /* connect outcomes in place: [0] success, errno_slot (from Go) maps errnos to 1..15, 0 = rare */
#define NERRNO 256

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

#endif
