/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Keys and values of `sockscope syscalls`: aggregated in the kernel, read by userspace when it
 * prints. Per (task's netns, tgid, syscall): calls, failures, latency; per errno; per path. */
#ifndef SOCKSCOPE_SYSCALLS_H
#define SOCKSCOPE_SYSCALLS_H

#define PATH_LEN 128
#define PATH_SYSCALLS 12

/* The comm is part of every key, as DTrace's execname: a process that execs (ip netns exec, a
 * shell) gets a row per name. */
struct sc_key {
	__u32 netns;
	__u32 tgid;
	__u32 nr;
	__u32 _pad;
	char comm[16];
};

struct sc_val {
	__u64 count;
	__u64 errors;
	__u64 lat_total_ns; /* with latency on */
	__u64 lat_max_ns;
};

struct err_key {
	__u32 netns;
	__u32 tgid;
	__u32 nr;
	__s32 err; /* positive errno */
	char comm[16];
};

struct path_key {
	__u32 netns;
	__u32 tgid;
	__u32 nr;
	__u32 _pad;
	char comm[16];
	char path[PATH_LEN];
};

/* Index of the per-CPU "dropped" counters: entries that did not fit their map. */
enum dropped_idx {
	DROPPED_COUNTS = 0,
	DROPPED_ERRORS = 1,
	DROPPED_PATHS = 2,
	DROPPED_MAX = 3,
};

#endif
