// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Kernel side of `sockscope syscalls`: DTrace's @[execname, pid, probefunc] = count(), kept in
 * the kernel per network namespace, with failures by errno, latency and file paths on request.
 * raw tracepoints (tp_btf) on sys_enter/sys_exit need no tracefs. Tasks outside the traced
 * namespaces leave after three loads and one hash lookup. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "syscalls.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile bool filter_netns = false;
const volatile __u32 filter_pid = 0;
const volatile bool want_latency = false;
const volatile bool want_paths = false;
/* Count per namespace only (the exporter): no tgid, no comm; fewer keys and no comm copy. */
const volatile bool by_netns = false;
/* sockscope itself: its own calls (entering namespaces to read them) are not the workload's. */
const volatile __u32 exclude_tgid = 0;
/* Syscalls whose argument path_arg[i] is a path (open, openat, unlink, ...), set per arch. */
const volatile __u32 path_nrs[PATH_SYSCALLS] = {};
const volatile __u8 path_args[PATH_SYSCALLS] = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} netns_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct sc_key);
	__type(value, struct sc_val);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct err_key);
	__type(value, __u64);
} errors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct path_key);
	__type(value, __u64);
} paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROPPED_MAX);
	__type(key, __u32);
	__type(value, __u64);
} dropped SEC(".maps");

/* When the current thread's syscall started (with latency on). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} started SEC(".maps");

/* Scratch space for a path key: too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_key);
} path_scratch SEC(".maps");

const struct sc_key *unused_sc_key __attribute__((unused));
const struct sc_val *unused_sc_val __attribute__((unused));
const struct err_key *unused_err_key __attribute__((unused));
const struct path_key *unused_path_key __attribute__((unused));

static __always_inline void count_dropped(__u32 idx)
{
	__u64 *n = bpf_map_lookup_elem(&dropped, &idx);
	if (n)
		*n += 1;
}

/* The task's network namespace, if it is traced; 0 otherwise. */
static __always_inline __u32 traced_netns(struct task_struct *task)
{
	__u32 netns = task->nsproxy->net_ns->ns.inum;
	if (filter_netns && !bpf_map_lookup_elem(&netns_filter, &netns))
		return 0;
	if (filter_pid && task->tgid != filter_pid)
		return 0;
	if (task->tgid == exclude_tgid)
		return 0;
	return netns ? netns : 1;
}

/* The syscall number and first two arguments from the user registers, per architecture (CO-RE
 * flavors: vmlinux.h describes x86_64 only). */
#if defined(__TARGET_ARCH_arm64)
struct pt_regs___sockscope_arm64 {
	unsigned long regs[31];
	unsigned long orig_x0;
	int syscallno;
} __attribute__((preserve_access_index));
#define ARM64_REGS(r) ((struct pt_regs___sockscope_arm64 *)(r))
#define SYSCALL_NR(r) BPF_CORE_READ(ARM64_REGS(r), syscallno)
#define SYSCALL_ARG1(r) BPF_CORE_READ(ARM64_REGS(r), orig_x0)
#define SYSCALL_ARG2(r) BPF_CORE_READ(ARM64_REGS(r), regs[1])
#else
#define SYSCALL_NR(r) BPF_CORE_READ((r), orig_ax)
#define SYSCALL_ARG1(r) BPF_CORE_READ((r), di)
#define SYSCALL_ARG2(r) BPF_CORE_READ((r), si)
#endif

static __always_inline void count_path(struct pt_regs *regs, __u32 netns, __u32 tgid, __u32 nr)
{
	int arg = -1;
#pragma unroll
	for (int i = 0; i < PATH_SYSCALLS; i++) {
		if (path_nrs[i] == nr && nr != 0) {
			arg = path_args[i];
			break;
		}
	}
	if (arg < 0)
		return;
	const char *p = 0;
	if (arg == 0)
		p = (const char *)SYSCALL_ARG1(regs);
	else
		p = (const char *)SYSCALL_ARG2(regs);
	__u32 zero = 0;
	struct path_key *k = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!k)
		return;
	__builtin_memset(k, 0, sizeof(*k));
	k->netns = netns;
	k->tgid = tgid;
	k->nr = nr;
	bpf_get_current_comm(k->comm, sizeof(k->comm));
	if (bpf_probe_read_user_str(k->path, sizeof(k->path), p) < 0)
		return;
	__u64 *n = bpf_map_lookup_elem(&paths, k);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&paths, k, &one, BPF_NOEXIST)) {
		n = bpf_map_lookup_elem(&paths, k); /* another CPU inserted it */
		if (n)
			__sync_fetch_and_add(n, 1);
		else
			count_dropped(DROPPED_PATHS);
	}
}

SEC("tp_btf/sys_enter")
int BPF_PROG(on_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 netns = traced_netns(task);
	if (!netns)
		return 0;
	if (want_latency) {
		__u64 *ts = bpf_task_storage_get(&started, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (ts)
			*ts = bpf_ktime_get_ns();
	}
	if (want_paths)
		count_path(regs, netns, task->tgid, (__u32)id);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(on_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 netns = traced_netns(task);
	if (!netns)
		return 0;
	struct sc_key key = {.netns = netns, .nr = (__u32)SYSCALL_NR(regs)};
	if (!by_netns) {
		key.tgid = task->tgid;
		bpf_get_current_comm(key.comm, sizeof(key.comm));
	}
	struct sc_val *v = bpf_map_lookup_elem(&counts, &key);
	if (!v) {
		struct sc_val init = {};
		if (bpf_map_update_elem(&counts, &key, &init, BPF_NOEXIST) && !bpf_map_lookup_elem(&counts, &key)) {
			count_dropped(DROPPED_COUNTS);
			return 0;
		}
		v = bpf_map_lookup_elem(&counts, &key);
		if (!v)
			return 0;
	}
	v->count++;
	if (ret < 0 && ret >= -4095) {
		v->errors++;
		struct err_key ek = {.netns = netns, .tgid = key.tgid, .nr = key.nr, .err = (__s32)-ret};
		__builtin_memcpy(ek.comm, key.comm, sizeof(ek.comm));
		__u64 *n = bpf_map_lookup_elem(&errors, &ek);
		if (n) {
			*n += 1;
		} else {
			__u64 one = 1;
			if (bpf_map_update_elem(&errors, &ek, &one, BPF_NOEXIST))
				count_dropped(DROPPED_ERRORS);
		}
	}
	if (want_latency) {
		__u64 *ts = bpf_task_storage_get(&started, task, 0, 0);
		if (ts && *ts) {
			__u64 d = bpf_ktime_get_ns() - *ts;
			*ts = 0;
			v->lat_total_ns += d;
			if (d > v->lat_max_ns)
				v->lat_max_ns = d;
		}
	}
	return 0;
}
