// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Kernel side of `sockscope export`: counters kept in the kernel per network namespace. Nothing
 * reaches user space per event; a scrape reads the counters of the namespaces it counts.
 *
 * A namespace is counted when Go has given it a slot (netns.h). Its counters are one element of
 * a per-CPU array (export.h): increments touch only the local CPU's copy, with no atomics and no
 * map insert, so there is nothing to race on and nothing to fill up; the rare transitions and
 * errnos that have no place there go to a small per-CPU hash.
 *
 * Socket gauges (sockets per state) come from the same transitions: each move of a full socket
 * from one state to another counts out of the old state and into the new one, so a scrape reads
 * them instead of walking the namespace's share of the host's TCP hash. A namespace's starting
 * point is one walk (walk_full) when it gets its slot; what the transitions never show is read
 * live at the scrape: the request sockets of its listeners (read_requests) and its time-wait
 * count (Go, from /proc/net/sockstat in the namespace).
 *
 * Connect outcomes and durations follow connect.h, the definition trace uses: from CLOSE ->
 * SYN_SENT to the transition out of SYN_SENT. No syscall tracepoint is attached (they would put
 * every syscall of the machine on the slow path), so failures before SYN_SENT (ENETUNREACH) are
 * not counted here. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "netns.h"
#include "lost.h"
#include "owner.h"
#include "connect.h"
#include "nested.h"
#include "count.h"
#include "export.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set from Go before load. */
const volatile __u64 bucket_le_ns[NBUCKETS] = {}; /* upper bounds, ascending */
const volatile __u8 trans_slot[256] = {};         /* from << 4 | to -> index into transitions */
const volatile __u8 errno_slot[NERRNO] = {};      /* errno -> index into connects */
const volatile __u32 handshake_mask = 0;          /* handshakes' size less one (a power of two) */
const volatile __u32 twin_area = 0;               /* where the twin's counters start in counters: slots + 1 */

/* Put the types Go reads into BTF, so bpf2go can generate their twins. */
const struct netns_counters *unused_netns_counters __attribute__((unused));
const struct rare_key *unused_rare_key __attribute__((unused));
const struct listener_entry *unused_listener __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1); /* slots, from Go */
	__type(key, __u32);
	__type(value, struct netns_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1); /* from Go */
	__type(key, struct rare_key);
	__type(value, __u64);
} rare SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* handshake_mask + 1, from Go */
	__type(key, __u32);
	__type(value, struct handshake);
} handshakes SEC(".maps");

/* The listening sockets of counted namespaces, by address: read_requests visits only them,
 * however large the host's TCP tables are. A listener enters at CLOSE -> LISTEN, or, if it
 * listened before its namespace was counted, from walk_full, and leaves at LISTEN -> CLOSE,
 * before the kernel frees it (Go also drops the listeners of a namespace no longer counted). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1); /* from Go */
	__type(key, __u64);
	__type(value, struct listener_entry);
} listeners SEC(".maps");

/* gauged says whether full sockets in state are counted by the gauges: every state a full
 * socket can be listed in. CLOSE sockets are in no table, time-wait sockets are not full sockets
 * (the full socket reads X -> CLOSE when its time-wait socket takes its place) and request
 * sockets (NEW_SYN_RECV) never pass the tracepoint. */
static __always_inline bool gauged(int state)
{
	return state > 0 && state < TCP_NEW_SYN_RECV && state != TCP_CLOSE && state != TCP_TIME_WAIT;
}

/* counters_of is a namespace's counters: the main programs' copy, or with twin its twin's. The
 * twin runs inside the main program's run (an interrupt between its load and its store of a
 * counter): were they the same counters, the main program's store would undo the twin's
 * increment. Go sums the two copies. */
static __always_inline struct netns_counters *counters_of(__u32 netns, bool twin)
{
	__u32 slot = netns_slot_of(netns);
	if (!slot)
		return NULL;
	if (twin)
		slot += twin_area;
	return bpf_map_lookup_elem(&counters, &slot);
}

/* add_rare counts one event that has no place in netns_counters. */
static __always_inline void add_rare(__u32 netns, __u16 kind, __u16 arg)
{
	struct rare_key k = {.slot = netns_slot_of(netns), .kind = kind, .arg = arg};
	__u64 *v = bpf_map_lookup_elem(&rare, &k);
	if (!v) {
		__u64 zero = 0;
		v = insert_or_find(&rare, &k, &zero);
		if (!v) {
			note_lost(LOST_RARE_FULL);
			return;
		}
	}
	__sync_fetch_and_add(v, 1); /* the twin may count the same key inside the main program */
}

static __always_inline __u32 bucket(__u64 ns)
{
	__u32 i;
#pragma unroll
	for (i = 0; i < NBUCKETS; i++)
		if (ns <= bucket_le_ns[i])
			return i;
	return NBUCKETS;
}

/* sk_addr is the socket's address as a number. The verifier allows no arithmetic on a pointer
 * (not even the shift of a hash), so it is copied out through the stack; the helper call is paid
 * only where a connect starts or ends. */
static __always_inline __u64 sk_addr(const struct sock *sk)
{
	__u64 p = (__u64)sk, v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), &p);
	return v;
}

/* listener_add enters a listener of a counted namespace in the listeners table (a listener that
 * is already in it stays as it is). */
static __always_inline void listener_add(const struct sock *sk, __u32 netns)
{
	__u64 addr = sk_addr(sk);
	struct listener_entry l = {.netns = netns};
	if (!insert_or_find(&listeners, &addr, &l))
		note_lost(LOST_LISTENERS_FULL);
}

static __always_inline struct handshake *handshake_of(__u64 addr)
{
	/* Sockets are slab objects: the low bits of their addresses say little, so mix them all. */
	__u32 idx = (__u32)(((addr >> 6) * 0x9E3779B97F4A7C15ULL) >> 40) & handshake_mask;
	return bpf_map_lookup_elem(&handshakes, &idx);
}

/* The clock is read only for a connect's two transitions, each time as the last thing before the
 * value is stored: the other eight transitions of a connection pay nothing for it, and a program
 * attached after this one and its twin on the tracepoint (trace's) reads its own clock soon after. */
static __always_inline int count_transition(struct sock *sk, int oldstate, int newstate, bool twin)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	/* Before the namespace check: a connect whose namespace stopped being counted must still
	 * free its entry. */
	__u64 started = 0;
	if (connect_ends(oldstate)) {
		__u64 addr = sk_addr(sk);
		struct handshake *h = handshake_of(addr);
		if (h && h->sk == addr) {
			started = h->ts;
			h->sk = 0;
		}
	}
	/* Before the namespace check too: a listener must leave the table before it is freed. */
	if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE) {
		__u64 addr = sk_addr(sk);
		bpf_map_delete_elem(&listeners, &addr);
	}
	__u32 netns = sk_netns(sk);
	struct netns_counters *c = counters_of(netns, twin);
	if (!c)
		return 0;
	/* 6.1's verifier loses the bounds of an OR of bounded values: mask the index last, where
	 * the compiler cannot see that the mask changes nothing. */
	__u32 ti = ((oldstate & 15) << 4) | (newstate & 15);
	barrier_var(ti);
	__u8 t = trans_slot[ti & 255];
	if (t && t < NTRANS) {
		/* The compiler drops a mask it can prove redundant, and the verifier does not keep the
		 * bound of the compare it folds (t - 1 < 31): hide t from the compiler, then mask. */
		__u32 i = t;
		barrier_var(i);
		c->transitions[i & (NTRANS - 1)] += 1;
	} else
		add_rare(netns, RARE_TRANSITION, (__u16)(oldstate << 8 | newstate));

	/* LISTEN -> SYN_RECV is a new socket, the listener's clone, not the listener moving. */
	if (gauged(oldstate) && !(oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)) {
		__u32 o = oldstate;
		barrier_var(o);
		c->gauge_out[o & (NSTATES - 1)] += 1;
	}
	if (gauged(newstate)) {
		__u32 n = newstate;
		barrier_var(n);
		c->gauge_in[n & (NSTATES - 1)] += 1;
		if (newstate == TCP_LISTEN)
			listener_add(sk, netns);
	}

	if (connect_starts(oldstate, newstate)) {
		__u64 addr = sk_addr(sk);
		struct handshake *n = handshake_of(addr);
		if (n) {
			if (n->sk)
				note_lost(LOST_HANDSHAKES); /* another connect in progress loses its start */
			n->sk = addr;
			n->ts = bpf_ktime_get_ns();
		}
		return 0;
	}
	if (!connect_ends(oldstate))
		return 0;
	bool in_call;
	int err = connect_errno(sk, bpf_skc_to_tcp_sock(sk), newstate, &in_call);
	__u8 s = 0;
	if (err >= 0 && err < NERRNO) {
		/* As above: older verifiers (5.10) keep no lower bound from the unsigned compare the
		 * compiler makes of this, so the index is masked where the compiler cannot drop it. */
		__u32 e = err;
		barrier_var(e);
		s = errno_slot[e & (NERRNO - 1)];
	}
	if (err == 0)
		c->connects[0] += 1;
	else if (s && s < NCONN) {
		__u32 i = s;
		barrier_var(i);
		c->connects[i & (NCONN - 1)] += 1;
	} else
		add_rare(netns, RARE_CONNECT, (__u16)err);
	if (err == 0 && started) {
		__u64 took = bpf_ktime_get_ns() - started;
		__u32 b = bucket(took);
		barrier_var(b);
		if (b <= NBUCKETS)
			c->duration[b] += 1;
		c->duration_sum_ns += took;
	}
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(count_state, struct sock *sk, int oldstate, int newstate)
{
	nested_enter(sk, oldstate, newstate);
	return count_transition(sk, oldstate, newstate, false);
}

/* count_state's twin (nested.h): a transition the kernel skipped in count_state is counted here,
 * so the socket gauges never keep a socket in the state it left. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(count_state_nested, struct sock *sk, int oldstate, int newstate)
{
	struct nested_state *n = nested_twin_enter();
	if (nested_skipped(n, sk, oldstate, newstate))
		count_transition(sk, oldstate, newstate, true);
	nested_twin_leave(n);
	return 0;
}

/* Newer kernels (6.18 has it, 6.12 not) pass a third argument, err, and fire for retransmits
 * that were not sent too; older ones fire only for those sent. Set from Go, from the kernel's BTF:
 * where it is false the branch below is dead, so the verifier never sees the read of ctx[2] that
 * it would refuse on a kernel whose tracepoint has two arguments. */
const volatile bool retransmit_has_err = false;

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(count_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	if (retransmit_has_err && ctx[2])
		return 0; /* not sent (the device queue was busy); TCP tries again later */
	struct netns_counters *c = counters_of(sk_netns(sk), false);
	if (c)
		c->retransmits += 1;
	return 0;
}

/* sk is the socket the reset answers for, if any: a full, time-wait or request socket (all start
 * with sock_common), or NULL for a segment no socket wanted, whose namespace is its device's. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(count_reset_sent, const struct sock *sk, const struct sk_buff *skb)
{
	__u32 netns;
	if (sk)
		netns = sk_netns(sk);
	else if (skb)
		netns = skb->dev->nd_net.net->ns.inum;
	else
		return 0;
	struct netns_counters *c = counters_of(netns, false);
	if (c)
		c->resets_sent += 1;
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(count_reset_received, struct sock *sk)
{
	struct netns_counters *c = counters_of(sk_netns(sk), false);
	if (c)
		c->resets_received += 1;
	return 0;
}

/* Full sockets per state of the walking thread's namespace (an iter/tcp iterator lists only
 * that one), the starting point of its gauges; listeners found on the way enter the listeners
 * table.
 * The counts are globals, written out as one record by the last call of a walk; Go runs one walk
 * at a time. A walk zeroes them at its first call, which it knows by its session id: seq_num
 * cannot tell (the first socket and the last call of a walk of one socket both have 0). */
__u32 full_counts[NSTATES] = {};
__u64 full_session = 0;

SEC("iter/tcp")
int walk_full(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (ctx->meta->session_id != full_session) {
		full_session = ctx->meta->session_id;
#pragma unroll
		for (int i = 0; i < NSTATES; i++)
			full_counts[i] = 0;
	}
	if (!skc) {
		bpf_seq_write(ctx->meta->seq, full_counts, sizeof(full_counts));
		return 0;
	}
	int state = skc->skc_state;
	if (!gauged(state))
		return 0;
	/* The compiler folds gauged() into a bit test, which leaves the verifier no bound. */
	__u32 i = state;
	barrier_var(i);
	full_counts[i & (NSTATES - 1)]++;
	if (state == TCP_LISTEN) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
		if (tp)
			listener_add((struct sock *)tp, sk_netns((struct sock *)tp));
	}
	return 0;
}

/* read_requests stores each listener's request sockets (the length of its SYN queue) in its
 * entry, for Go to sum per namespace. Go runs it (BPF_PROG_TEST_RUN) at a scrape: map element
 * iterators (iter/bpf_sk_storage_map, iter/bpf_map_elem) are refused on some hosts where other
 * iterators load. The address is a listener's that has not left the table: listeners are freed
 * only after an RCU grace period (SOCK_RCU_FREE), and the program runs under rcu_read_lock; the
 * reads are fault-safe (bpf_probe_read_kernel) all the same. */
static long read_listener(void *map, __u64 *addr, struct listener_entry *l, void *unused)
{
	const struct inet_connection_sock *icsk = (const void *)*addr;
	l->requests = BPF_CORE_READ(icsk, icsk_accept_queue.qlen.counter);
	return 0;
}

SEC("raw_tp")
int read_requests(void *ctx)
{
	bpf_for_each_map_elem(&listeners, read_listener, NULL, 0);
	return 0;
}
