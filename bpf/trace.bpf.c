// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Kernel side of `sockscope trace` and `sockscope record`: one small ring-buffer record per TCP
 * state transition, filtered here (namespace, family, port) so that unwanted events never cost a
 * copy. Everything that needs memory per socket (the owner of softirq transitions, the time spent
 * in a state, the connect latency) is kept by user space from the records, so no transition pays
 * for socket storage: its allocation, the copy into every accepted socket and the free cost more
 * than the record itself (docs/performance.md).
 *
 * With --connect-syscall (connect_syscall), the syscalls:sys_{enter,exit}_connect tracepoints add
 * what no transition shows: failures before SYN_SENT (ENETUNREACH), and the exact errno of
 * failures inside connect() after it, instead of the inference in connect.h. They put every
 * syscall of the machine on the slow path while attached, which is why they are a choice. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "netns.h"
#include "comm.h"
#include "lost.h"
#include "count.h"
#include "owner.h"
#include "connect.h"
#include "nested.h"
#include "trace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000

#define EINTR 4
#define EISCONN 106
#define EALREADY 114
#define EINPROGRESS 115

/* Set from Go before load. */
const volatile bool filter_ports = false;  /* only sockets with a local or remote port in port_bits */
const volatile __u8 filter_family = 0;     /* AF_INET or AF_INET6; 0 = both */
const volatile bool connect_syscall = false;
const volatile __u32 port_bits[65536 / 32] = {};
/* --pid: only sockets owned by this process. With it or --comm (comm.h), owned_socks below. */
const volatile __u32 owner_pid = 0;

/* Records are submitted with BPF_RB_NO_WAKEUP and the reader polls on a timer: a wakeup is an
 * irq_work self-IPI raised on the traced CPU, and softirq TCP work run on its exit would nest in
 * the program, where the kernel skips the nested run. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized from Go */
} events SEC(".maps");

/* Put the record types into BTF for bpf2go. */
const struct event_v4 *unused_event_v4 __attribute__((unused));
const struct event_v6 *unused_event_v6 __attribute__((unused));
const struct owner_record *unused_owner_record __attribute__((unused));

static __always_inline bool port_wanted(__u16 sport, __u16 dport)
{
	if (!filter_ports)
		return true;
	return ((port_bits[sport >> 5] >> (sport & 31)) & 1) || ((port_bits[dport >> 5] >> (dport & 31)) & 1);
}

/* The connect() a thread is in (--connect-syscall), in task-local storage: a pointer away from
 * the task, where a hash keyed by thread id costs a lookup, an update and a delete per call. */
#define CALL_LINKED 1   /* the call moved sk to SYN_SENT: its outcome is the state path's */
#define CALL_DEFERRED 2 /* sk went back to CLOSE inside the call: the return value has the errno */

struct connect_call {
	__u64 ts;  /* call entry; 0 = not in connect() */
	__u64 uaddr;
	__u64 sk;
	__u32 netns;
	__s32 fd;
	__u32 flags;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct connect_call);
} connect_calls SEC(".maps");

static __always_inline struct connect_call *current_call(void)
{
	struct connect_call *call = bpf_task_storage_get(&connect_calls, bpf_get_current_task_btf(), 0, 0);
	return call && call->ts ? call : NULL;
}

static __always_inline void fill_comm(char *comm, bool owner)
{
	if (owner)
		process_comm(bpf_get_current_task_btf(), comm);
}

/* The owner filter (--pid, --comm). Most transitions run in softirq, where `current` is not the
 * owner (owner.h), so whether a socket is wanted is decided where the kernel runs in its owner's
 * context and remembered for the rest of its life, by the socket's address:
 * - a new life (connect() or listen(), from CLOSE) is wanted if the calling process is;
 * - an accepted socket (LISTEN -> SYN_RECV) is wanted if a wanted listener has its port;
 * - any other transition is wanted if its socket is, or if a wanted process closes it (the
 *   socket is followed from there);
 * - the sockets that existed before the trace are entered by Go from the owner walk.
 * The table is a superset of what user space prints: several processes may share a port
 * (SO_REUSEPORT) and a socket's owner may change when another process closes it. User space keeps
 * every socket's owner from the records and applies the same predicate exactly (events.Filter). */
#define filter_owner (owner_pid || comm_count)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* from Go */
	__type(key, __u64);         /* the socket's address */
	__type(value, __u8);
} owned_socks SEC(".maps");

struct owned_port {
	__u32 netns;
	__u16 port; /* host byte order */
	__u16 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* from Go */
	__type(key, struct owned_port);
	__type(value, __u32); /* wanted listeners on the port */
} owned_ports SEC(".maps");

const struct owned_port *unused_owned_port __attribute__((unused));

static __always_inline bool task_wanted(struct task_struct *task)
{
	if (owner_pid && task->tgid != owner_pid)
		return false;
	return comm_wanted(task);
}

static __always_inline void port_listened(struct owned_port *p, int delta)
{
	if (delta > 0) {
		__u32 zero = 0;
		__u32 *n = insert_or_find(&owned_ports, p, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		else
			note_lost(LOST_OWNED_FULL);
		return;
	}
	/* listen() and close() run in process context, rarely at once on one port: a race leaves
	 * the port in the table, which only widens the superset. */
	__u32 *n = bpf_map_lookup_elem(&owned_ports, p);
	if (!n)
		return;
	if (*n > 1)
		__sync_fetch_and_add(n, -1);
	else
		bpf_map_delete_elem(&owned_ports, p);
}

/* owner_wanted applies the owner filter to one transition, and keeps the tables. */
static __always_inline bool owner_wanted(struct sock *sk, __u32 netns, __u16 sport, int oldstate, int newstate)
{
	__u64 key = (__u64)sk;
	struct owned_port port = {.netns = netns, .port = sport};
	bool known = false;
	bool wanted;
	if (oldstate == TCP_CLOSE) {
		wanted = task_wanted(bpf_get_current_task_btf());
		if (!wanted) {
			/* An entry left by an earlier life at this address (a socket the walk entered that
			 * closed before Go did) must not carry over to this one. */
			bpf_map_delete_elem(&owned_socks, &key);
			return false;
		}
	} else if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
		wanted = bpf_map_lookup_elem(&owned_ports, &port) != NULL;
	} else {
		known = bpf_map_lookup_elem(&owned_socks, &key) != NULL;
		wanted = known || (owner_context(oldstate, newstate) && task_wanted(bpf_get_current_task_btf()));
	}
	if (!wanted)
		return false;
	if (newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&owned_socks, &key);
		if (oldstate == TCP_LISTEN)
			port_listened(&port, -1);
	} else if (!known) {
		__u8 one = 1;
		if (bpf_map_update_elem(&owned_socks, &key, &one, BPF_ANY))
			note_lost(LOST_OWNED_FULL);
		else if (newstate == TCP_LISTEN)
			port_listened(&port, 1);
	}
	return true;
}

/* Cheapest checks first: two loads and compares, the namespace table, the port bits, then the
 * owner filter. */
static __always_inline int handle_state(struct sock *sk, int oldstate, int newstate)
{
	/* A connect's two transitions read the clock before the filters (after the twin's push), so
	 * that its latency is the time between the two transitions and not between two points of
	 * this program, which the first transition reaches later than the second: its memory is cold
	 * in a connect() just entered from user space, warm in the softirq that ends the handshake.
	 * The price is a clock read (about 39 ns here) at those two transitions of connections in
	 * namespaces that are not traced. */
	__u64 early = (connect_starts(oldstate, newstate) || connect_ends(oldstate)) ? bpf_ktime_get_ns() : 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (filter_family && family != filter_family)
		return 0;
	__u32 netns = sk_netns(sk);
	if (!netns_wanted(netns))
		return 0;
	/* Every other transition reads the clock once it is wanted: its event's time. */
	__u64 now = early ? early : bpf_ktime_get_ns();
	/* inet_sport, as the tracepoint itself reports it: skc_num is released at CLOSE. */
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u16 sport = tp ? bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport) : 0;
	__u16 dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (!port_wanted(sport, dport))
		return 0;
	if (filter_owner && !owner_wanted(sk, netns, sport, oldstate, newstate))
		return 0;

	__u8 kind = EVENT_STATE;
	int err = 0;
	if (connect_ends(oldstate)) {
		bool in_call;
		err = connect_errno(sk, tp, newstate, &in_call);
		kind |= EVENT_CONNECT;
		if (connect_syscall && in_call) {
			struct connect_call *call = current_call();
			if (call && call->sk == (__u64)sk) {
				call->flags |= CALL_DEFERRED; /* on_connect_exit reports it */
				kind = EVENT_STATE;
			}
		}
	} else if (connect_syscall && connect_starts(oldstate, newstate)) {
		struct connect_call *call = current_call();
		if (call) {
			call->sk = (__u64)sk;
			call->netns = netns;
			call->flags = CALL_LINKED;
		}
	}
	bool owner = owner_context(oldstate, newstate);
	if (owner)
		kind |= EVENT_OWNER;

	struct event *e;
	if (family == AF_INET6) {
		struct event_v6 *r = owner ? bpf_ringbuf_reserve(&events, sizeof(*r), 0)
					   : bpf_ringbuf_reserve(&events, sizeof(*r) - TASK_COMM_LEN, 0);
		if (!r)
			goto full;
		BPF_CORE_READ_INTO(&r->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&r->daddr, sk, __sk_common.skc_v6_daddr);
		fill_comm(r->comm, owner);
		e = &r->e;
	} else {
		struct event_v4 *r = owner ? bpf_ringbuf_reserve(&events, sizeof(*r), 0)
					   : bpf_ringbuf_reserve(&events, sizeof(*r) - TASK_COMM_LEN, 0);
		if (!r)
			goto full;
		r->saddr = sk->__sk_common.skc_rcv_saddr;
		r->daddr = sk->__sk_common.skc_daddr;
		fill_comm(r->comm, owner);
		e = &r->e;
	}
	e->ts_ns = now;
	e->sk = (__u64)sk;
	e->netns = netns;
	e->pid = owner ? bpf_get_current_pid_tgid() >> 32 : 0;
	e->sport = sport;
	e->dport = dport;
	e->family = family;
	e->old_state = oldstate;
	e->new_state = newstate;
	e->kind = kind;
	e->err = err;
	e->latency_us = 0;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
full:
	note_lost(LOST_RING_FULL);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
	nested_enter(sk, oldstate, newstate);
	return handle_state(sk, oldstate, newstate);
}

/* on_state's twin (nested.h): user space keeps every socket's life from its records, so the
 * transitions the kernel skipped in on_state are handled here. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state_nested, struct sock *sk, int oldstate, int newstate)
{
	struct nested_state *n = nested_twin_enter();
	if (nested_skipped(n, sk, oldstate, newstate))
		handle_state(sk, oldstate, newstate);
	nested_twin_leave(n);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int on_connect_enter(struct trace_event_raw_sys_enter *ctx)
{
	struct connect_call *call = bpf_task_storage_get(&connect_calls, bpf_get_current_task_btf(), 0,
							 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!call)
		return 0;
	call->ts = bpf_ktime_get_ns();
	call->fd = (__s32)ctx->args[0];
	call->uaddr = ctx->args[1];
	call->sk = 0;
	call->netns = 0;
	call->flags = 0;
	return 0;
}

/* The TCP socket behind a file descriptor of the current task, or NULL. */
static __always_inline struct sock *tcp_sock_of_fd(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if ((unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP || BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return NULL;
	return sk;
}

/* A connect() that failed: report it where no transition did (a deferred failure inside the call,
 * or one before SYN_SENT). Success, and failures the state path reported, leave nothing here. */
SEC("tracepoint/syscalls/sys_exit_connect")
int on_connect_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct connect_call *call = current_call();
	if (!call)
		return 0;
	struct connect_call c = *call;
	call->ts = 0;

	long ret = ctx->ret;
	if (ret >= 0 || ret == -EINPROGRESS || ret == -EALREADY || ret == -EISCONN || ret == -EINTR)
		return 0;
	if ((c.flags & CALL_LINKED) && !(c.flags & CALL_DEFERRED))
		return 0;

	__u32 netns = c.netns;
	__u64 sk = c.sk;
	if (!(c.flags & CALL_LINKED)) {
		/* No transition happened (e.g. ENETUNREACH): is it a TCP socket at all? */
		if (c.fd < 0)
			return 0;
		struct sock *s = tcp_sock_of_fd(c.fd);
		if (!s)
			return 0;
		sk = (__u64)s;
		netns = BPF_CORE_READ(s, __sk_common.skc_net.net, ns.inum);
	}
	if (!netns_wanted(netns))
		return 0;
	struct sockaddr_in6 sa = {};
	if (bpf_probe_read_user(&sa, sizeof(sa), (void *)c.uaddr))
		if (bpf_probe_read_user(&sa, sizeof(struct sockaddr_in), (void *)c.uaddr))
			return 0;
	__u16 family = sa.sin6_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (filter_family && family != filter_family)
		return 0;
	__u16 dport = bpf_ntohs(sa.sin6_port);
	if (!port_wanted(0, dport))
		return 0;

	__u64 now = bpf_ktime_get_ns();
	struct event *e;
	if (family == AF_INET6) {
		struct event_v6 *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
		if (!r)
			goto full;
		__builtin_memset(r->saddr, 0, sizeof(r->saddr));
		__builtin_memcpy(r->daddr, &sa.sin6_addr, 16);
		bpf_get_current_comm(r->comm, sizeof(r->comm));
		e = &r->e;
	} else {
		struct event_v4 *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
		if (!r)
			goto full;
		r->saddr = 0;
		r->daddr = ((struct sockaddr_in *)&sa)->sin_addr.s_addr;
		bpf_get_current_comm(r->comm, sizeof(r->comm));
		e = &r->e;
	}
	e->ts_ns = now;
	e->sk = sk;
	e->netns = netns;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->sport = 0;
	e->dport = dport;
	e->family = family;
	e->old_state = 0;
	e->new_state = 0;
	e->kind = EVENT_CONNECT | EVENT_CALL | EVENT_OWNER;
	e->err = -ret;
	e->latency_us = (c.flags & CALL_LINKED) ? 0 : (now - c.ts) / 1000;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
full:
	note_lost(LOST_RING_FULL);
	return 0;
}

/* The owners of the sockets in the selected namespaces that existed before the trace started. */
SEC("iter/task_file")
int dump_owners(struct bpf_iter__task_file *ctx)
{
	return emit_owner(ctx, true);
}
