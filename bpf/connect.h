/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* A connect's start, outcome and errno: one definition for trace, record, export and diagnose.
 *
 * A connect starts at CLOSE -> SYN_SENT, which tcp_v4_connect and tcp_v6_connect reach after the
 * route lookup and before choosing a local port, and ends at the transition out of SYN_SENT:
 * - to ESTABLISHED (or SYN_RECV, a simultaneous open): success;
 * - to CLOSE with the socket's error set: that errno (a reset: ECONNREFUSED; the SYN retransmits
 *   ran out: ETIMEDOUT; an ICMP error: EHOSTUNREACH, ENETUNREACH ...);
 * - to CLOSE without an error and before any segment left: connect() itself gave up after
 *   SYN_SENT, which in tcp_v4_connect/tcp_v6_connect is inet_hash_connect finding no free local
 *   port (or the 4-tuple of a bound port in use): EADDRNOTAVAIL. (Rarer failures there, such as
 *   an allocation failure in tcp_connect, read as EADDRNOTAVAIL too; trace --connect-syscall takes
 *   the syscall's own return value instead.)
 * - to CLOSE without an error after the SYN left: the application closed the socket before the
 *   handshake ended, for example because of its own timeout: ECONNABORTED.
 * Its latency is the time between the two transitions. A failure before SYN_SENT (no route:
 * ENETUNREACH; EACCES from a BPF or LSM hook) makes no transition; only the syscall's return
 * shows it (trace and record --connect-syscall). */
#ifndef SOCKSCOPE_CONNECT_H
#define SOCKSCOPE_CONNECT_H

#define EADDRNOTAVAIL 99
#define ECONNABORTED 103

static __always_inline bool connect_starts(int oldstate, int newstate)
{
	return oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT;
}

static __always_inline bool connect_ends(int oldstate)
{
	return oldstate == TCP_SYN_SENT;
}

/* connect_errno is the outcome of a connect that leaves SYN_SENT for newstate: 0 for success.
 * tp is sk as a tcp_sock (bpf_skc_to_tcp_sock), or NULL. *in_call is set when the errno is
 * inferred because connect() itself gave up (the syscall's return value has the exact one). */
static __always_inline int connect_errno(struct sock *sk, struct tcp_sock *tp, int newstate, bool *in_call)
{
	*in_call = false;
	if (newstate == TCP_ESTABLISHED || newstate == TCP_SYN_RECV)
		return 0;
	int err = sk->sk_err;
	if (err)
		return err;
	if (tp && tp->segs_out == 0) {
		*in_call = true;
		return EADDRNOTAVAIL;
	}
	return ECONNABORTED;
}

#endif
