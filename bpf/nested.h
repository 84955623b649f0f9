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
 *
 * Transitions the kernel runs the main program for but not the twin leave entries nobody pops:
 * those nested in the twin itself (an interrupt that lands in the twin and runs softirqs on its
 * exit), and every transition made on the CPU while a task holds the twin's recursion mark
 * outside its body (seen on 6.18, whose tracepoints may run their probes preemptible: 150 us of
 * another task's transitions between one transition's main program and its twin). So:
 * - the twin says on this CPU that it runs (in_twin), and a main program that runs meanwhile
 *   pushes nothing: its twin will not run;
 * - when the stack is full, a push takes the top entry's place. The entries below are kept: the
 *   bottom one is the outer transition whose twin is still to come. A burst of such transitions
 *   (a softirq acknowledging dozens of sockets at once) once filled the stack while a task held
 *   the twin's mark, and the push that wrapped it back to the bottom overwrote the outer entry:
 *   its twin did not find it and handled the transition a second time. A full stack loses the top
 *   entry instead, which is live only if the push comes between a main program and its twin, on
 *   a stack already full of entries nobody pops.
 *
 * Nothing is pushed before the twin has run once on the CPU (ready): the main program is attached
 * first, and what it pushed before its twin was attached would never be popped. The twin's first
 * run on a CPU takes it that the main program ran for its transition. */
#ifndef SOCKSCOPE_NESTED_H
#define SOCKSCOPE_NESTED_H

#define NESTED_DEPTH 8

struct nested_state {
	__u64 rescued; /* transitions the twin took over; Go subtracts them from the misses */
	__u32 depth;
	__u16 in_twin; /* the twin runs on this CPU */
	__u16 ready;   /* the twin has run on this CPU */
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

/* nested_push pushes a transition (its socket's address and nested_what) unless its twin will
 * not run. */
static __always_inline void nested_push(struct nested_state *n, __u64 sk, __u64 what)
{
	if (!n || n->in_twin || !n->ready)
		return;
	__u32 d = n->depth;
	if (d >= NESTED_DEPTH)
		d = NESTED_DEPTH - 1;
	n->sk[d] = sk;
	n->what[d] = what;
	n->depth = d + 1;
}

/* nested_enter, the main program's first instruction, pushes the transition it runs for. */
static __always_inline void nested_enter(const struct sock *sk, int oldstate, int newstate)
{
	nested_push(nested_of(), (__u64)sk, nested_what(sk, oldstate, newstate));
}

/* nested_twin_enter starts the twin: from here to nested_twin_leave, a main program that runs on
 * this CPU runs nested in it. */
static __always_inline struct nested_state *nested_twin_enter(void)
{
	struct nested_state *n = nested_of();
	if (n)
		n->in_twin = 1;
	return n;
}

/* nested_twin_leave ends the twin; it is its last instruction on every path. */
static __always_inline void nested_twin_leave(struct nested_state *n)
{
	if (n)
		n->in_twin = 0;
}

/* nested_missed, in the twin, says whether the kernel skipped the main program for a transition
 * (and counts it as rescued), or pops it. */
static __always_inline bool nested_missed(struct nested_state *n, __u64 sk, __u64 what)
{
	if (!n)
		return false;
	if (!n->ready) {
		n->ready = 1;
		return false;
	}
	__u32 d = n->depth;
#pragma unroll
	for (int i = NESTED_DEPTH - 1; i >= 0; i--) {
		if (i < d && n->sk[i] == sk && n->what[i] == what) {
			n->depth = i;
			return false;
		}
	}
	n->rescued += 1;
	return true;
}

/* nested_skipped is nested_missed for the transition the twin runs for. */
static __always_inline bool nested_skipped(struct nested_state *n, const struct sock *sk, int oldstate, int newstate)
{
	return nested_missed(n, (__u64)sk, nested_what(sk, oldstate, newstate));
}

#endif
