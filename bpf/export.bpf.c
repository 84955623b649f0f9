// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Kernel side of `sockscope export`: counters kept in the kernel, per network namespace. Nothing
 * reaches user space per event; a scrape reads one map.
 *
 * Every counter is one entry of a per-CPU hash keyed by (netns, kind, arg): increments touch only
 * the local CPU's slot, with no atomics and no ring buffer. Only namespaces in `tracked` (the host
 * and the running containers, kept by the exporter) get entries, and the exporter deletes a
 * namespace's entries when its last container goes, so the map follows the containers that exist.
 *
 * Connect outcomes come from the state path alone, without syscall tracepoints (which would put
 * every syscall of the machine on the slow path): SYN_SENT -> ESTABLISHED is a success;
 * SYN_SENT -> CLOSE carries the errno in sk_err (RST: ECONNREFUSED, timeout: ETIMEDOUT, ICMP);
 * without sk_err and before any segment left, connect() itself failed after choosing SYN_SENT,
 * which in tcp_v4_connect/tcp_v6_connect means no free local port: EADDRNOTAVAIL; otherwise the
 * application gave up mid-handshake: ECONNABORTED. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "export.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define IPPROTO_TCP 6
#define EADDRNOTAVAIL 99
#define ECONNABORTED 103

/* Upper bounds of the connect-duration buckets in nanoseconds, ascending; set from Go. */
const volatile __u64 bucket_le_ns[NBUCKETS] = {};

/* Puts struct counter_key into BTF, so bpf2go can generate its Go twin. */
const struct counter_key *unused_counter_key __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* resized from Go */
	__type(key, struct counter_key);
	__type(value, __u64);
} counters SEC(".maps");

/* Network namespaces to count, by inode. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* resized from Go */
	__type(key, __u32);
	__type(value, __u8);
} tracked SEC(".maps");

/* Start of each handshake in progress (CLOSE -> SYN_SENT), by socket address. Every SYN_SENT
 * socket leaves SYN_SENT before it is freed, which deletes its entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* resized from Go */
	__type(key, __u64);
	__type(value, __u64);
} handshakes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NLOST);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline void note_lost(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &reason);
	if (n)
		(*n)++;
}

/* add counts delta for (netns, kind, arg); false when the namespace is not tracked. The common
 * case, a counter that exists, is one lookup. */
static __always_inline bool add(__u32 netns, __u16 kind, __u16 arg, __u64 delta)
{
	struct counter_key k = {.netns = netns, .kind = kind, .arg = arg};
	__u64 *v = bpf_map_lookup_elem(&counters, &k);
	if (v) {
		*v += delta;
		return true;
	}
	if (!bpf_map_lookup_elem(&tracked, &netns))
		return false;
	/* Another CPU may create it first (-EEXIST): then add to ours, which that created. */
	if (bpf_map_update_elem(&counters, &k, &delta, BPF_NOEXIST) == 0)
		return true;
	v = bpf_map_lookup_elem(&counters, &k);
	if (v)
		*v += delta;
	else
		note_lost(LOST_COUNTERS_FULL);
	return true;
}

static __always_inline __u16 bucket(__u64 ns)
{
	__u16 i;
#pragma unroll
	for (i = 0; i < NBUCKETS; i++)
		if (ns <= bucket_le_ns[i])
			return i;
	return NBUCKETS;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(count_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u32 netns = sk->__sk_common.skc_net.net->ns.inum;
	if (!add(netns, KIND_TRANSITION, (__u16)(oldstate << 8 | newstate), 1))
		return 0;

	__u64 key = (__u64)sk;
	if (newstate == TCP_SYN_SENT) {
		__u64 now = bpf_ktime_get_ns();
		if (bpf_map_update_elem(&handshakes, &key, &now, BPF_ANY))
			note_lost(LOST_HANDSHAKES_FULL);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT)
		return 0;

	__u64 *start = bpf_map_lookup_elem(&handshakes, &key);
	__u64 took = start ? bpf_ktime_get_ns() - *start : 0;
	if (start)
		bpf_map_delete_elem(&handshakes, &key);

	if (newstate == TCP_ESTABLISHED) {
		add(netns, KIND_CONNECT, 0, 1);
		if (start) {
			add(netns, KIND_DURATION, bucket(took), 1);
			add(netns, KIND_DURATION_SUM, 0, took);
		}
		return 0;
	}
	__u16 err = (__u16)sk->sk_err;
	if (!err) {
		const struct tcp_sock *tp = (const struct tcp_sock *)sk;
		err = BPF_CORE_READ(tp, segs_out) == 0 ? EADDRNOTAVAIL : ECONNABORTED;
	}
	add(netns, KIND_CONNECT, err, 1);
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
	add(sk->__sk_common.skc_net.net->ns.inum, KIND_RETRANSMIT, 0, 1);
	return 0;
}

/* sk is the socket the reset answers for, if any: a full, time-wait or request socket (all start
 * with sock_common), or NULL for a segment no socket wanted, whose namespace is its device's. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(count_reset_sent, const struct sock *sk, const struct sk_buff *skb)
{
	__u32 netns;
	if (sk)
		netns = sk->__sk_common.skc_net.net->ns.inum;
	else if (skb)
		netns = skb->dev->nd_net.net->ns.inum;
	else
		return 0;
	add(netns, KIND_RESET_SENT, 0, 1);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(count_reset_received, struct sock *sk)
{
	add(sk->__sk_common.skc_net.net->ns.inum, KIND_RESET_RECEIVED, 0, 1);
	return 0;
}
