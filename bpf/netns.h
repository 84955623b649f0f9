/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The network namespace of a socket or a task, and the one namespace filter every program uses.
 *
 * The filter is a direct-mapped table: an array indexed by the inode's low bits, whose entry holds
 * the inode it selects and a slot number that Go assigns (the exporter indexes its counters by
 * it). Namespace inodes come from one counter, so the inodes selected at once rarely share low
 * bits; where two do, their entry holds NETNS_SHARED and the overflow hash has them. A lookup is
 * an array load and a compare, where a hash lookup (jhash, a bucket walk) cost a measurable share
 * of every transition; it comes after the cheaper checks, as the first thing that touches a map.
 * Before the table, a fixed element holding the first few selected namespaces (netns_few, below)
 * spares the table's dependent load where few are selected. Go writes the three maps
 * (loader/netns.go, the NetnsTable every capability uses): the overflow entry before the marker,
 * the marker away before the overflow entry, and the few after the table. */
#ifndef SOCKSCOPE_NETNS_H
#define SOCKSCOPE_NETNS_H

#define NETNS_SHARED 0xffffffff /* slot: more than one selected inode has these low bits */

struct netns_slot {
	__u32 inum;
	__u32 slot; /* 0: the entry selects nothing */
};

/* Set from Go before load: the direct table's size less one (a power of two, at least twice the
 * namespaces selected at once), and whether the filter applies at all. */
const volatile __u32 netns_mask = 0;
const volatile bool filter_netns = false;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* netns_mask + 1, from Go */
	__type(key, __u32);
	__type(value, struct netns_slot);
} netns_direct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); /* the namespaces selected at once, from Go */
	__type(key, __u32);
	__type(value, __u32);
} netns_overflow SEC(".maps");

/* The first few selected namespaces again, in one element at a fixed place: the direct table's
 * entry depends on the inode, so reaching it is one more dependent load after the three that
 * read the inode, and where the caches and TLB are cold (every syscall on a host whose kernel
 * isolates its page tables) that load is most of what a filtered-out event costs. This element's
 * address is fixed, so it is loaded alongside the inode; with as many namespaces selected as it
 * holds (`--container x`, `--netns`), a namespace nobody traces is rejected without the direct
 * table. Go keeps each selected inode in one place while it stays selected, and sets `more` while
 * some selected inode is only in the direct table. */
#define NETNS_FEW 4

struct netns_few {
	struct netns_slot e[NETNS_FEW]; /* inum 0: a free place */
	__u32 more;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netns_few);
} netns_few SEC(".maps");

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	return sk->__sk_common.skc_net.net->ns.inum;
}

static __always_inline __u32 task_netns(const struct task_struct *task)
{
	return task->nsproxy->net_ns->ns.inum;
}

/* netns_slot_of is the slot of a selected namespace, 0 for one not selected. */
static __always_inline __u32 netns_slot_of(__u32 inum)
{
	__u32 zero = 0;
	struct netns_few *few = bpf_map_lookup_elem(&netns_few, &zero);
	if (!few)
		return 0;
	/* A place being written may show its inode before its slot: no match until both are there. */
#pragma unroll
	for (int i = 0; i < NETNS_FEW; i++)
		if (few->e[i].inum == inum && few->e[i].slot)
			return few->e[i].slot;
	if (!few->more)
		return 0;
	__u32 idx = inum & netns_mask;
	struct netns_slot *s = bpf_map_lookup_elem(&netns_direct, &idx);
	if (!s || !s->slot)
		return 0;
	if (s->slot != NETNS_SHARED)
		return s->inum == inum ? s->slot : 0;
	__u32 *slot = bpf_map_lookup_elem(&netns_overflow, &inum);
	return slot ? *slot : 0;
}

/* netns_wanted tells whether events of this namespace are wanted: all of them without a filter. */
static __always_inline bool netns_wanted(__u32 inum)
{
	return !filter_netns || netns_slot_of(inum);
}

#endif
