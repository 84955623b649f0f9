/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What the kernel side of `sockscope trace` and `sockscope record` hands to user space: one
 * ring-buffer record per TCP state transition (and per connect() failure that made none, with
 * --connect-syscall). Declared once here; bpf2go generates the Go twins, and events.Tracker reads
 * the same layout.
 *
 * A record is as small as the event allows: struct event, then the addresses (8 bytes for IPv4,
 * 32 for IPv6), then the command name only where the kernel runs in the owner's context (kind has
 * EVENT_OWNER). The owner of other transitions, the time spent in the previous state and the
 * connect latency are user space's to derive: it sees every transition of every socket it reports
 * on, and keeps per socket what the kernel would otherwise keep in socket storage, at a cost the
 * traced CPU would pay on every transition. */
#ifndef SOCKSCOPE_TRACE_H
#define SOCKSCOPE_TRACE_H

#define TASK_COMM_LEN 16

enum event_kind {
	EVENT_STATE = 1,   /* a transition old_state -> new_state */
	EVENT_CONNECT = 2, /* a connect outcome (err); with EVENT_STATE, the transition concluded it */
	EVENT_OWNER = 4,   /* pid and the command name are the owner's: current runs in its context */
	EVENT_CALL = 8,    /* a connect outcome from the syscall's return (--connect-syscall); latency_us holds its duration when no transition started it */
};

struct event {
	__u64 ts_ns;      /* bpf_ktime_get_ns() */
	__u64 sk;         /* the socket's address: user space keys each socket's life by it */
	__u32 netns;      /* inode of the socket's network namespace */
	__u32 pid;        /* current's tgid with EVENT_OWNER, else 0 */
	__u16 sport;      /* host byte order */
	__u16 dport;
	__u8 family;      /* AF_INET or AF_INET6 */
	__u8 old_state;   /* TCP_* (include/net/tcp_states.h); 0 for a syscall-only connect failure */
	__u8 new_state;
	__u8 kind;        /* enum event_kind bits */
	__s32 err;        /* with EVENT_CONNECT: 0 success, else a positive errno */
	__u32 latency_us; /* with EVENT_CALL and no transition: connect() entry to return */
};

struct event_v4 {
	struct event e;
	__u32 saddr;
	__u32 daddr;
	char comm[TASK_COMM_LEN]; /* with EVENT_OWNER only: the record ends before it otherwise */
};

struct event_v6 {
	struct event e;
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[TASK_COMM_LEN];
};

#endif
