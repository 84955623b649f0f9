/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Keys and values of `sockscope syscalls` (and of export --syscalls and record): aggregated in the
 * kernel, read by user space when it prints. Per (task's netns, process, syscall): calls,
 * failures, latency; per errno; per path.
 *
 * A process is its tgid and its exec generation (task->self_exec_id, which every execve()
 * increments), so a process that execs gets a row per program, as DTrace's execname gives; the
 * command name is read once, when a row is made, into `comms`, not copied on every call. */
#ifndef SOCKSCOPE_SYSCALLS_H
#define SOCKSCOPE_SYSCALLS_H

#define PATH_LEN 128
#define PATH_SYSCALLS 12
#define SC_NR_INVALID 0xffffffff /* every syscall number the kernel does not have */
#define SC_NR_OTHER 0xfffffffe   /* a namespace's calls beyond its budget of rows */
#define SC_NR_MAX 1024           /* numbers at or above it are invalid on every architecture */

struct sc_key {
	__u32 netns;
	__u32 tgid;
	__u32 exec_id; /* low bits of task->self_exec_id */
	__u32 nr;
};

struct sc_val {
	__u64 count;
	__u64 errors;
	__u64 lat_total_ns; /* with latency on */
	__u64 lat_max_ns;
};

struct err_key {
	struct sc_key k;
	__s32 err; /* positive errno */
	__u32 _pad;
};

struct path_key {
	struct sc_key k;
	char path[PATH_LEN];
};

struct comm_key {
	__u32 tgid;
	__u32 exec_id;
};

struct comm_val {
	char comm[16];
};

#endif
