/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What the kernel side of `sockscope trace` hands to userspace. Declared once here; bpf2go
 * generates the Go twin (loader.traceEvent), and events.Decode reads the same layout. */
#ifndef SOCKSCOPE_TRACE_H
#define SOCKSCOPE_TRACE_H

#define TASK_COMM_LEN 16

/* event.kind: one ring-buffer record can carry both a state transition and the connect
 * outcome that the transition concluded (SYN_SENT -> ESTABLISHED or -> CLOSE). */
enum event_kind {
	EVENT_STATE = 1,
	EVENT_CONNECT = 2,
};

struct event {
	__u64 ts_ns;         /* bpf_ktime_get_ns() at the event */
	__u64 prev_state_ns; /* time spent in old_state; 0 when the socket was first seen mid-life */
	__u64 latency_ns;    /* connect(): from the call (or the SYN_SENT transition) to the outcome */
	__u32 netns;         /* inode of the socket's network namespace */
	__u32 pid;           /* owner's tgid; 0 when the owner is unknown */
	__s32 err;           /* connect outcome: 0 success, else a positive errno */
	__u16 sport;         /* host byte order */
	__u16 dport;         /* host byte order */
	__u8 saddr[16];      /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char comm[TASK_COMM_LEN];
	__u8 family;         /* AF_INET or AF_INET6 */
	__u8 old_state;      /* TCP_* as in include/net/tcp_states.h; 0 for syscall-only connect failures */
	__u8 new_state;
	__u8 kind;           /* enum event_kind bits */
	__u32 _pad;
};

#endif
