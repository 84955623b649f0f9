/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The owner of a socket, one definition for trace, record and the socket listings.
 *
 * Many transitions run in softirq, where `current` is whoever was interrupted. The kernel runs a
 * transition in the context of the process that owns the socket only at connect() (CLOSE ->
 * SYN_SENT), listen() (CLOSE -> LISTEN) and the application's close() or shutdown() (-> FIN_WAIT1,
 * CLOSE_WAIT -> LAST_ACK). Those records carry `current`; user space keeps the owner per socket
 * from them (an accepted socket starts out owned by its listener's owner), and takes the owners of
 * sockets that existed before it started from the owner walk below. */
#ifndef SOCKSCOPE_OWNER_H
#define SOCKSCOPE_OWNER_H

#define IPPROTO_TCP 6
#define IPPROTO_MPTCP 262
#define SOCK_STREAM 1

static __always_inline bool owner_context(int oldstate, int newstate)
{
	return (oldstate == TCP_CLOSE && (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN)) ||
	       newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK;
}

/* A socket whose owner the walk reports: a TCP stream socket, or an MPTCP one (whose file is the
 * MPTCP socket; its TCP subflows have none). */
static __always_inline bool owned_stream(const struct sock *sk)
{
	return sk->sk_type == SOCK_STREAM && (sk->sk_protocol == IPPROTO_TCP || sk->sk_protocol == IPPROTO_MPTCP);
}

/* One record of the owner walk (iter/task_file): a socket file of a process. */
struct owner_record {
	__u32 inode;
	__u32 pid;
	char comm[16];
	__u64 sk;    /* the socket's address, as trace's records carry it */
	__u32 netns;
	__u16 sport; /* host byte order: a listener's port, for the sockets it will accept */
	__u8 state;
	__u8 family;
};

/* emit_owner writes the owner record of one open file, if it is an owned stream socket (in a
 * selected namespace, when only_selected). */
static __always_inline int emit_owner(struct bpf_iter__task_file *ctx, bool only_selected)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	if (!file || !task)
		return 0;
	struct socket *sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	struct sock *sk = sock->sk;
	if (!sk || !owned_stream(sk))
		return 0;
	struct owner_record o = {};
	o.netns = sk_netns(sk);
	if (only_selected && !netns_wanted(o.netns))
		return 0;
	o.inode = file->f_inode->i_ino;
	o.pid = task->tgid;
	o.sk = (__u64)sk;
	o.sport = sk->__sk_common.skc_num;
	o.state = sk->__sk_common.skc_state;
	o.family = sk->__sk_common.skc_family;
	bpf_probe_read_kernel(o.comm, sizeof(o.comm), task->group_leader->comm); /* the process's name */
	bpf_seq_write(ctx->meta->seq, &o, sizeof(o));
	return 0;
}

#endif
