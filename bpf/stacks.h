/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The record of `sockscope syscalls --stacks`: at a syscall's entry, the thread's user registers
 * and the top of its user stack, for the Go unwinder (package stacks) to follow from the mapped
 * objects' call frame information, as perf's --call-graph dwarf does. */
#ifndef SOCKSCOPE_STACKS_H
#define SOCKSCOPE_STACKS_H

#define STACK_COPY (16 * 1024) /* bytes of user stack copied from the stack pointer up */
#define STACK_CHUNK 4096
#define REGS_SIZE (34 * 8)     /* x86_64 pt_regs is 21*8, arm64 user_pt_regs 34*8 */
#define KSTACK_DEPTH 32
#define SYSCALL_SLOTS 1024

struct stack_sample {
	__u64 start_time; /* the group leader's start_boottime: tells a reused PID apart */
	__u32 tgid;
	__u32 tid;
	__u32 netns;
	__u32 nr;
	__u32 stack_len;  /* bytes of stack[] that were read */
	__u32 regs_len;   /* bytes of regs[] that hold the user registers */
	__s32 kstack_len; /* bytes of kstack[], or a negative errno */
	__u32 _pad;
	char comm[16];
	__u8 regs[REGS_SIZE];
	__u64 kstack[KSTACK_DEPTH];
	__u8 stack[STACK_COPY];
};

/* Per-CPU counters of what happened to matching calls. */
enum stack_stat {
	STAT_MATCHED = 0,  /* calls that passed every filter */
	STAT_SAMPLED = 1,  /* of those, sent to user space */
	STAT_RATE = 2,     /* skipped by the rate limit (no --syscall or --comm filter) */
	STAT_RING = 3,     /* lost: the ring buffer was full */
	STAT_MAX = 4,
};

#endif
