// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Kernel side of `sockscope sockets`: the kernel's own TCP tables, read with a BPF iterator. It
 * sees what the state-change tracepoint cannot (time-wait and request sockets) and costs no
 * /proc parsing. An iter/tcp iterator lists the network namespace of the thread that opens it. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "netns.h"
#include "owner.h"
#include "sockets.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET6 10

/* icsk_pending values (include/net/inet_connection_sock.h) */
#define ICSK_TIME_RETRANS 1
#define ICSK_TIME_PROBE0 3
#define ICSK_TIME_LOSS_PROBE 5
#define ICSK_TIME_REO_TIMEOUT 6

/* Put the record types into BTF for bpf2go. */
const struct sock_record *unused_sock_record __attribute__((unused));
const struct owner_record *unused_owner_record __attribute__((unused));

/* The state ss shows: an orphaned FIN_WAIT2 socket waits in the time-wait table too, and ss
 * reports its substate; a request socket is SYN_RECV. */
static __always_inline __u8 ss_state(struct sock_common *skc)
{
	__u8 state = skc->skc_state;
	if (state == TCP_TIME_WAIT) {
		struct tcp_timewait_sock *tw = bpf_skc_to_tcp_timewait_sock(skc);
		if (tw)
			state = tw->tw_sk.tw_substate;
	} else if (state == TCP_NEW_SYN_RECV) {
		state = TCP_SYN_RECV;
	}
	return state;
}

SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct sock_record r = {};
	r.uid = ctx->uid;
	r.family = skc->skc_family;
	r.state = skc->skc_state;
	r.sport = skc->skc_num;
	r.dport = bpf_ntohs(skc->skc_dport);
	if (r.family == AF_INET6) {
		BPF_CORE_READ_INTO(&r.saddr, skc, skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&r.daddr, skc, skc_v6_daddr);
	} else {
		*(__u32 *)r.saddr = skc->skc_rcv_saddr;
		*(__u32 *)r.daddr = skc->skc_daddr;
	}

	r.state = ss_state(skc);
	if (skc->skc_state == TCP_TIME_WAIT) {
		r.timer = 3;
	} else if (skc->skc_state == TCP_NEW_SYN_RECV) {
		r.timer = 1;
	} else {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
		if (tp) {
			const struct inet_connection_sock *icsk = &tp->inet_conn;
			const struct sock *sk = &icsk->icsk_inet.sk;
			if (r.state == TCP_LISTEN) {
				r.rx_queue = sk->sk_ack_backlog;
				r.tx_queue = sk->sk_max_ack_backlog;
			} else {
				int rx = tp->rcv_nxt - tp->copied_seq;
				r.rx_queue = rx > 0 ? rx : 0;
				r.tx_queue = tp->write_seq - tp->snd_una;
			}
			__u8 pending = icsk->icsk_pending;
			if (pending == ICSK_TIME_RETRANS || pending == ICSK_TIME_REO_TIMEOUT ||
			    pending == ICSK_TIME_LOSS_PROBE)
				r.timer = 1;
			else if (pending == ICSK_TIME_PROBE0)
				r.timer = 4;
			r.retransmits = icsk->icsk_retransmits;
			struct socket *sock = sk->sk_socket;
			if (sock) {
				struct file *file = sock->file;
				if (file)
					r.inode = file->f_inode->i_ino;
			}
		}
	}
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

/* Sockets per state for one walk, for the exporter, which needs only these: one 64-byte record
 * at the end instead of one record per socket. A walk zeroes them at its first call, known by its
 * session id (seq_num cannot tell: the first socket and the last call of a walk of one socket
 * both have 0), so the loader lets one walk run at a time. */
__u32 state_counts[16] = {};
__u64 count_session = 0;

SEC("iter/tcp")
int count_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (ctx->meta->session_id != count_session) {
		count_session = ctx->meta->session_id;
#pragma unroll
		for (int i = 0; i < 16; i++)
			state_counts[i] = 0;
	}
	if (!skc) {
		/* The last call of a walk. */
		bpf_seq_write(ctx->meta->seq, state_counts, sizeof(state_counts));
		return 0;
	}
	state_counts[ss_state(skc) & 15]++;
	return 0;
}

/* Every TCP socket file of every process: inode -> owner. */
SEC("iter/task_file")
int dump_owners(struct bpf_iter__task_file *ctx)
{
	return emit_owner(ctx, false);
}
