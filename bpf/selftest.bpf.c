// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Programs that only the loader's tests run (BPF_PROG_RUN), to check the shared definitions
 * where a race cannot be produced on demand. Never attached. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "count.h"
#include "netns.h"
#include "nested.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} race_counts SEC(".maps");

/* One CPU's side of two CPUs making the same new key: its lookup found nothing, so it inserts.
 * Run on two CPUs in turn, the second insert fails with -EEXIST, as the loser's does in a race. */
SEC("raw_tp")
int insert_after_miss(void *ctx)
{
	__u32 key = 7;
	__u64 zero = 0;
	__u64 *v = insert_or_find(&race_counts, &key, &zero);
	if (v)
		*v += 1;
	return v ? 1 : 0;
}

/* The namespace filter of every program (netns.h), asked about one inode: the test run's first
 * argument. It returns the inode's slot, 0 for an inode not selected. */
SEC("raw_tp")
int netns_lookup(__u64 *ctx)
{
	return netns_slot_of((__u32)ctx[0]);
}

/* One step of a state program and its twin on the nested-run stack (nested.h), as the kernel
 * would run them: ctx[0] is the step, ctx[1] and ctx[2] the transition (socket, nested_what).
 * 0: the main program runs (push); 1: the twin starts; 2: the twin looks for the transition and
 * returns 1 if it takes it over; 3: the twin ends. */
SEC("raw_tp")
int nested_step(__u64 *ctx)
{
	struct nested_state *n = nested_of();
	switch (ctx[0]) {
	case 0:
		nested_push(n, ctx[1], ctx[2]);
		return 0;
	case 1:
		nested_twin_enter();
		return 0;
	case 2:
		return nested_missed(n, ctx[1], ctx[2]);
	case 3:
		nested_twin_leave(n);
		return 0;
	}
	return -1;
}
