/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Transitions the kernel skips, taken over by a twin program: one definition for trace, record and
 * export.
 *
 * The kernel does not run a tp_btf program on a CPU where it is already running: when an interrupt
 * lands in a program that runs in task context and its exit runs pending softirqs (receive packet
 * steering's IPIs, TCP timers), a TCP transition made there is skipped and only counted in the
 * program's recursion misses. Each state program therefore has a twin, attached to the same
 * tracepoint after it, so that the kernel runs it right after the main program for every
 * transition. The main program pushes the transition it runs for (socket and states) on a small
 * per-CPU stack, at its first instruction and before any filter; the twin looks for it
 * there, from the top:
 * - found: the main program ran for it; the twin pops it, with anything above it;
 * - not found: the kernel skipped the main program for it, and the twin handles it.
 *
 * Why a stack: a softirq may run between a main program and its twin (an interrupt between the
 * two runs), and push and pop its own transitions there; the outer transition stays below them.
 * An interrupt inside the twin itself, after its pop, may leave a transition pushed by a main
 * program whose twin the kernel skipped: such a stale entry could only match a skipped run of the
 * same socket, ports and transition (a socket's address is reused at once, its ports are not).
 * When the stack is full (stale entries only accumulate that way), it is emptied before the push;
 * that drops an outer transition, to be handled twice, only if it happens between a main program
 * and its twin. */
#ifndef SOCKSCOPE_NESTED_H
#define SOCKSCOPE_NESTED_H

#define NESTED_DEPTH 8

struct nested_state {
	__u64 rescued; /* transitions the twin took over; Go subtracts them from the misses */
	__u32 depth;
	__u32 unused;
	__u64 sk[NESTED_DEPTH];
	__u64 what[NESTED_DEPTH]; /* the ports, oldstate and newstate (nested_what) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nested_state);
} nested SEC(".maps");

/* nested_what is the rest of a transition's identity beside its socket's address: a socket's
 * memory is reused at once by the next socket, but that one has other ports. */
static __always_inline __u64 nested_what(const struct sock *sk, int oldstate, int newstate)
{
	return (__u64)sk->__sk_common.skc_portpair << 32 | (__u32)(oldstate << 8 | newstate);
}

static __always_inline struct nested_state *nested_of(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&nested, &zero);
}

/* nested_enter pushes the transition the main program runs for. */
static __always_inline void nested_enter(const struct sock *sk, int oldstate, int newstate)
{
	struct nested_state *n = nested_of();
	if (!n)
		return;
	__u32 d = n->depth;
	if (d >= NESTED_DEPTH)
		d = 0;
	n->sk[d] = (__u64)sk;
	n->what[d] = nested_what(sk, oldstate, newstate);
	n->depth = d + 1;
}

/* nested_skipped, in the twin, says whether the kernel skipped the main program for this
 * transition (and counts it as rescued), or pops it. */
static __always_inline bool nested_skipped(const struct sock *sk, int oldstate, int newstate)
{
	struct nested_state *n = nested_of();
	if (!n)
		return false;
	__u64 what = nested_what(sk, oldstate, newstate);
	__u32 d = n->depth;
#pragma unroll
	for (int i = NESTED_DEPTH - 1; i >= 0; i--) {
		if (i < d && n->sk[i] == (__u64)sk && n->what[i] == what) {
			n->depth = i;
			return false;
		}
	}
	n->rescued += 1;
	return true;
}

#endif
