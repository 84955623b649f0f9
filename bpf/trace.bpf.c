// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Kernel side of `sockscope trace`: one ring-buffer record per TCP state transition and per
 * connect() outcome, filtered here so that unwanted events never cost a copy.
 *
 * Owners. Many transitions run in softirq, where `current` is whoever was interrupted. The owner
 * is remembered in socket-local storage where the kernel runs in the owner's context: connect()
 * (CLOSE -> SYN_SENT), listen() (CLOSE -> LISTEN) and the application's close (-> FIN_WAIT1,
 * -> LAST_ACK). A child socket created by a listener inherits the listener's storage (BPF_F_CLONE),
 * so an accepted connection starts out owned by the process that listens. Storage dies with the
 * socket and is reset at CLOSE, so a reused socket address can never inherit a stale owner.
 *
 * Connect outcomes. Success and asynchronous failures (RST -> ECONNREFUSED, retransmit timeout ->
 * ETIMEDOUT, ICMP errors) are seen at SYN_SENT -> ESTABLISHED / CLOSE, with sk_err telling the
 * errno. Failures inside connect() itself (EADDRNOTAVAIL after SYN_SENT, ENETUNREACH before any
 * transition) are known only from the syscall's return value: sys_enter/sys_exit_connect. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "trace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000

#define EINTR 4
#define EISCONN 106
#define EALREADY 114
#define EINPROGRESS 115
#define ECONNABORTED 103

/* Set from Go before load. */
const volatile bool filter_netns = false;  /* only netns inodes in netns_filter */
const volatile bool filter_ports = false;  /* only sockets with a port in port_filter */
const volatile __u8 filter_family = 0;     /* AF_INET or AF_INET6; 0 = both */
const volatile __u32 filter_pid = 0;       /* only sockets owned by this tgid */
const volatile __u8 filter_state = 0;      /* only transitions from or to this state */
const volatile bool connect_errors_only = false;

/* Records are submitted with BPF_RB_NO_WAKEUP and the reader polls on a timer. A wakeup is an
 * irq_work self-IPI raised inside the program; softirq TCP processing can run on that IPI's exit,
 * nested in the program, and the kernel then skips the nested run (a recursion miss). Polling
 * also keeps the IPI's cost off the CPU being traced. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized from Go */
} events SEC(".maps");

/* Puts struct event into BTF, so bpf2go can generate its Go twin. */
const struct event *unused_event __attribute__((unused));

/* Events that could not be reserved in the ring buffer, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} netns_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} port_filter SEC(".maps");

struct sock_info {
	__u64 state_ts;   /* time of the last transition; 0 = never seen */
	__u64 connect_ts; /* connect() start while the handshake is pending */
	__u32 pid;
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_info);
} sock_infos SEC(".maps");

#define CALL_LINKED 1   /* the call moved a socket to SYN_SENT: its outcome is the state path's */
#define CALL_DEFERRED 2 /* that socket went back to CLOSE with no error: the return value tells */

/* The connect() a thread is in, kept in task-local storage: a pointer away from the task,
 * where a hash keyed by thread id would cost a lookup, an update and a delete per call. */
struct connect_call {
	__u64 ts;         /* call entry; 0 = not in connect() */
	__u64 uaddr;
	__u64 sk;         /* the socket that this call moved to SYN_SENT */
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

/* The current thread's connect() in progress, or NULL. */
static __always_inline struct connect_call *current_call(void)
{
	struct connect_call *call = bpf_task_storage_get(&connect_calls, bpf_get_current_task_btf(), 0, 0);
	return call && call->ts ? call : NULL;
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		*n += 1;
}

static __always_inline bool port_wanted(__u16 sport, __u16 dport)
{
	if (!filter_ports)
		return true;
	return bpf_map_lookup_elem(&port_filter, &sport) || bpf_map_lookup_elem(&port_filter, &dport);
}

static __always_inline void set_owner(struct sock_info *si)
{
	si->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(si->comm, sizeof(si->comm));
}

static __always_inline int handle_state(struct sock *sk, int oldstate, int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (filter_family && family != filter_family)
		return 0;
	__u32 netns = sk->__sk_common.skc_net.net->ns.inum;
	if (filter_netns && !bpf_map_lookup_elem(&netns_filter, &netns))
		return 0;
	/* inet_sport, as the tracepoint itself reports it: skc_num is already released at CLOSE. */
	__u16 sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	__u16 dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (!port_wanted(sport, dport))
		return 0;

	__u64 now = bpf_ktime_get_ns();
	__u64 prev_ns = 0, latency_ns = 0;
	__s32 err = 0;
	__u8 kind = EVENT_STATE;

	struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (si) {
		/* A child cloned from a listener carries the listener's time: it is new. */
		if (si->state_ts && oldstate != TCP_LISTEN)
			prev_ns = now - si->state_ts;
		si->state_ts = now;

		if (oldstate == TCP_CLOSE) {
			/* connect() or listen(): in the owner's context. A new life of the socket. */
			set_owner(si);
			si->connect_ts = 0;
			if (newstate == TCP_SYN_SENT) {
				struct connect_call *call = current_call();
				si->connect_ts = now;
				if (call) {
					si->connect_ts = call->ts;
					call->sk = (__u64)sk;
					call->netns = netns;
					call->flags = CALL_LINKED;
				}
			}
		} else if (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) {
			/* Only the application's close() or shutdown() moves a socket here. */
			set_owner(si);
		}

		if (oldstate == TCP_SYN_SENT && si->connect_ts) {
			latency_ns = now - si->connect_ts;
			si->connect_ts = 0;
			kind |= EVENT_CONNECT;
			if (newstate != TCP_ESTABLISHED) {
				err = BPF_CORE_READ(sk, sk_err);
				if (!err) {
					/* No socket error: either connect() itself failed after SYN_SENT
					 * (EADDRNOTAVAIL: its return value says so, at sys_exit), or the
					 * application closed the socket before the handshake ended. */
					struct connect_call *call = current_call();
					if (call && call->sk == (__u64)sk) {
						call->flags |= CALL_DEFERRED;
						kind &= ~EVENT_CONNECT;
					} else {
						err = ECONNABORTED;
					}
				}
			}
		}
	}

	if (connect_errors_only) {
		if (!(kind & EVENT_CONNECT) || !err)
			return 0;
		kind = EVENT_CONNECT;
	}
	if (filter_state && oldstate != filter_state && newstate != filter_state)
		kind &= ~EVENT_STATE;
	if (!kind)
		return 0;
	if (filter_pid && (!si || si->pid != filter_pid))
		return 0;

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return 0;
	}
	e->ts_ns = now;
	e->prev_state_ns = prev_ns;
	e->latency_ns = latency_ns;
	e->netns = netns;
	e->err = err;
	e->sport = sport;
	e->dport = dport;
	e->family = family;
	e->old_state = oldstate;
	e->new_state = newstate;
	e->kind = kind;
	e->_pad = 0;
	if (si) {
		e->pid = si->pid;
		__builtin_memcpy(e->comm, si->comm, sizeof(e->comm));
	} else {
		e->pid = 0;
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	}
	if (family == AF_INET6) {
		bpf_core_read(e->saddr, sizeof(e->saddr), &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->daddr, sizeof(e->daddr), &sk->__sk_common.skc_v6_daddr);
	} else {
		__builtin_memset(e->saddr, 0, sizeof(e->saddr));
		__builtin_memset(e->daddr, 0, sizeof(e->daddr));
		*(__u32 *)e->saddr = sk->__sk_common.skc_rcv_saddr;
		*(__u32 *)e->daddr = sk->__sk_common.skc_daddr;
	}
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

/* Per CPU: [0] is 1 while on_state runs, [1] counts events on_state_nested took over. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} nesting SEC(".maps");

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
	__u32 key = 0;
	__u64 *active = bpf_map_lookup_elem(&nesting, &key);
	if (active)
		*active = 1;
	handle_state(sk, oldstate, newstate);
	if (active)
		*active = 0;
	return 0;
}

/* The kernel does not run a tp_btf program again on a CPU where it is already running: when
 * softirq TCP work interrupts on_state (an interrupt's exit runs pending softirqs), the nested
 * transition would be skipped and lost. This twin, attached to the same tracepoint, does the work
 * for exactly those transitions and nothing otherwise. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state_nested, struct sock *sk, int oldstate, int newstate)
{
	__u32 key = 0;
	__u64 *active = bpf_map_lookup_elem(&nesting, &key);
	if (!active || !*active)
		return 0;
	key = 1;
	__u64 *rescued = bpf_map_lookup_elem(&nesting, &key);
	if (rescued)
		*rescued += 1;
	return handle_state(sk, oldstate, newstate);
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
		return 0; /* the state path reported (or will report) this connect */

	__u32 netns = c.netns;
	if (!(c.flags & CALL_LINKED)) {
		/* No transition happened (e.g. ENETUNREACH): is it a TCP socket at all? */
		if (c.fd < 0)
			return 0;
		struct sock *sk = tcp_sock_of_fd(c.fd);
		if (!sk)
			return 0;
		netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	}
	if (filter_netns && !bpf_map_lookup_elem(&netns_filter, &netns))
		return 0;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (filter_pid && pid != filter_pid)
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

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->latency_ns = e->ts_ns - c.ts;
	e->netns = netns;
	e->pid = pid;
	e->err = -ret;
	e->dport = dport;
	e->family = family;
	e->kind = EVENT_CONNECT;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (family == AF_INET6)
		__builtin_memcpy(e->daddr, &sa.sin6_addr, 16);
	else
		__builtin_memcpy(e->daddr, &((struct sockaddr_in *)&sa)->sin_addr, 4);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

/* Run once at attach time: every TCP socket that already exists gets its owner from the task
 * whose file table holds it, so connections and listeners opened before sockscope started are
 * owned from their first event (children of a listener inherit through BPF_F_CLONE). */
SEC("iter/task_file")
int seed_owners(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	if (!file || !task)
		return 0;
	struct socket *sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	struct sock *sk = sock->sk;
	if (!sk || sk->sk_protocol != IPPROTO_TCP || sk->sk_type != SOCK_STREAM)
		return 0;
	if (filter_netns) {
		__u32 netns = sk->__sk_common.skc_net.net->ns.inum;
		if (!bpf_map_lookup_elem(&netns_filter, &netns))
			return 0;
	}
	struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!si || si->pid)
		return 0; /* a transition since attach already named the owner */
	si->pid = task->tgid;
	bpf_probe_read_kernel(si->comm, sizeof(si->comm), task->comm);
	return 0;
}
