/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Loss accounting, one definition for every program: what the kernel side could not report, by
 * reason, in a per-CPU array that Go sums (loader/lost.go). Nothing is ever dropped without one of
 * these counting it; programs the kernel skipped while another ran on the CPU are counted by the
 * kernel itself (the programs' recursion misses), and Go adds those. */
#ifndef SOCKSCOPE_LOST_H
#define SOCKSCOPE_LOST_H

enum lost_reason {
	LOST_RING_FULL = 0,       /* trace, record: no room in the ring buffer */
	LOST_HANDSHAKES = 1,      /* export: a connect's start was overwritten, its duration not measured */
	LOST_RARE_FULL = 2,       /* export: the map of rare counters (unusual transitions, errnos) was full */
	LOST_SC_COUNTS = 3,       /* syscalls: the counts map was full */
	LOST_SC_BUDGET = 4,       /* syscalls: a namespace used its budget of keys; counted under "other" */
	LOST_SC_ERRORS = 5,       /* syscalls: the errors map was full */
	LOST_SC_PATHS = 6,        /* syscalls: the paths map was full */
	LOST_OWNED_FULL = 7,      /* trace, record with --pid or --comm: the table of wanted sockets was full */
	LOST_LISTENERS_FULL = 8,  /* export: the listeners table was full; a listener's requests are not counted */
	NLOST = 9,
};

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
		*n += 1;
}

#endif
