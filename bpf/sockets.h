/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Records of `sockscope sockets`: one per TCP socket of a network namespace (iter/tcp). The owner
 * walk's records (one per TCP socket file of a process) are owner.h's. */
#ifndef SOCKSCOPE_SOCKETS_H
#define SOCKSCOPE_SOCKETS_H

struct sock_record {
	__u32 inode;       /* socket inode; 0 for time-wait and request sockets, and orphans */
	__u32 uid;
	__u32 rx_queue;    /* LISTEN: accept backlog; else bytes received, not read */
	__u32 tx_queue;    /* LISTEN: maximum backlog; else bytes sent, not acknowledged */
	__u16 sport;       /* host byte order */
	__u16 dport;
	__u8 saddr[16];    /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u8 family;
	__u8 state;        /* TCP_*; request sockets (NEW_SYN_RECV) are reported as SYN_RECV */
	__u8 timer;        /* as /proc/net/tcp: 0 none, 1 retransmit, 2 keepalive, 3 time-wait, 4 probe */
	__u8 retransmits;
};

#endif
