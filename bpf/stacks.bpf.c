// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Kernel side of `sockscope syscalls --stacks`: DTrace's @[ustack()] = count() on a syscall's
 * entry. The kernel does not unwind: frame pointers are missing from Debian's glibc and node, so a
 * frame-pointer walk here would stop at libc or follow garbage. It copies the user registers and
 * the top of the user stack, and Go unwinds them from each object's CFI (package stacks).
 *
 * Filters run cheapest first: the syscall number (an array slot), the process, the process name
 * (comm.h), then the namespace (netns.h): the filters every program shares. With a --syscall or
 * --comm filter every matching call is sent, so counts per stack are exact; without one a per-CPU
 * rate limit bounds the cost, and the counters say how many were skipped. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "netns.h"
#include "comm.h"
#include "stacks.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile bool filter_syscall = false;
const volatile __u32 filter_pid = 0;
const volatile __u32 exclude_tgid = 0;
/* Samples per CPU per second when no --syscall or --comm filter selects the calls; 0: no limit. */
const volatile __u32 rate_per_cpu = 0;
const volatile bool want_kstack = false;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SYSCALL_SLOTS);
	__type(key, __u32);
	__type(value, __u8);
} syscall_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* The rate limit's window, per CPU: its start and the samples taken in it. */
struct rate_window {
	__u64 start;
	__u64 taken;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rate_window);
} rate SEC(".maps");

const struct stack_sample *unused_stack_sample __attribute__((unused));

static __always_inline void stat(__u32 idx)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &idx);
	if (n)
		*n += 1;
}

/* Whether the rate limit lets one more sample through on this CPU. */
static __always_inline bool rate_allows(void)
{
	__u32 zero = 0;
	struct rate_window *w = bpf_map_lookup_elem(&rate, &zero);
	if (!w)
		return false;
	__u64 now = bpf_ktime_get_ns();
	if (now - w->start >= 1000000000ULL) {
		w->start = now;
		w->taken = 0;
	}
	if (w->taken >= rate_per_cpu)
		return false;
	w->taken++;
	return true;
}

#if defined(__TARGET_ARCH_arm64)
struct pt_regs___sockscope_arm64 {
	unsigned long regs[31];
	unsigned long sp;
	unsigned long pc;
} __attribute__((preserve_access_index));
#define USER_SP(r) BPF_CORE_READ((struct pt_regs___sockscope_arm64 *)(r), sp)
#define USER_REGS_LEN (34 * 8)
#else
#define USER_SP(r) BPF_CORE_READ((r), sp)
#define USER_REGS_LEN (21 * 8)
#endif

SEC("tp_btf/sys_enter")
int BPF_PROG(on_enter, struct pt_regs *regs, long id)
{
	if (filter_syscall) {
		__u32 nr = (__u32)id;
		__u8 *on = bpf_map_lookup_elem(&syscall_filter, &nr);
		if (!on || !*on)
			return 0;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid;
	if (filter_pid && tgid != filter_pid)
		return 0;
	if (tgid == exclude_tgid)
		return 0;
	if (!comm_wanted(task))
		return 0;
	__u32 netns = task_netns(task);
	if (!netns_wanted(netns))
		return 0;
	stat(STAT_MATCHED);
	if (rate_per_cpu && !rate_allows()) {
		stat(STAT_RATE);
		return 0;
	}

	struct stack_sample *s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);
	if (!s) {
		stat(STAT_RING);
		return 0;
	}
	s->start_time = task->group_leader->start_boottime;
	s->tgid = tgid;
	s->tid = task->pid;
	s->netns = netns;
	s->nr = (__u32)id;
	s->_pad = 0;
	process_comm(task, s->comm);
	s->regs_len = USER_REGS_LEN;
	if (bpf_probe_read_kernel(s->regs, USER_REGS_LEN, regs))
		s->regs_len = 0;
	s->kstack_len = 0;
	if (want_kstack)
		s->kstack_len = bpf_get_stack(ctx, s->kstack, sizeof(s->kstack), 0);

	/* bpf_probe_read_user fails as a whole if any byte is unmapped, and a main thread's stack
	 * often ends a few KB above sp: read up to the next page boundary, then three whole pages
	 * (12 KB + the first part, at most 16 KB), and keep what was read before the first failure. */
	__u64 sp = USER_SP(regs);
	__u32 first = STACK_CHUNK - (__u32)(sp & (STACK_CHUNK - 1));
	__u32 len = 0;
	if (first <= STACK_CHUNK && !bpf_probe_read_user(s->stack, first, (void *)sp)) {
		len = first;
#pragma unroll
		for (int i = 0; i < STACK_COPY / STACK_CHUNK - 1; i++) {
			__u32 off = first + i * STACK_CHUNK;
			if (off > STACK_COPY - STACK_CHUNK)
				break;
			if (bpf_probe_read_user(&s->stack[off], STACK_CHUNK, (void *)(sp + off)))
				break;
			len = off + STACK_CHUNK;
		}
	}
	s->stack_len = len;
	stat(STAT_SAMPLED);
	bpf_ringbuf_submit(s, 0);
	return 0;
}
