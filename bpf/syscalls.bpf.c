// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Kernel side of `sockscope syscalls`: DTrace's @[execname, pid, probefunc] = count(), kept in
 * the kernel per network namespace, with failures by errno, latency and file paths on request.
 * Raw tracepoints (tp_btf) on sys_exit (and sys_enter, for latency only) need no tracefs.
 *
 * Every syscall of the machine runs these programs, so their filters come cheapest first: two
 * register compares (the process filters), the process name with --comm (comm.h), then the task's
 * namespace against the direct table of netns.h; a task outside the traced namespaces leaves without a map lookup of any cost.
 *
 * No namespace can starve the others: each may make at most `rows_per_netns` rows across the
 * counts, errors and paths maps; beyond that its calls are counted under SC_NR_OTHER, exactly,
 * and LOST_SC_BUDGET says how many. Invalid syscall numbers (anything an unprivileged process can
 * pass to syscall(2)) share one row, SC_NR_INVALID. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "netns.h"
#include "comm.h"
#include "lost.h"
#include "count.h"
#include "syscalls.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 filter_pid = 0;
const volatile bool want_latency = false;
const volatile bool want_paths = false;
/* Count per namespace only (the exporter): no process; fewer rows. */
const volatile bool by_netns = false;
/* sockscope itself: its own calls (entering namespaces to read them) are not the workload's. */
const volatile __u32 exclude_tgid = 0;
const volatile __u32 rows_per_netns = 0;
/* Syscalls whose argument path_args[i] is a path (open, openat, unlink, ...), set per arch. */
const volatile __u32 path_nrs[PATH_SYSCALLS] = {};
const volatile __u8 path_args[PATH_SYSCALLS] = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 32768); /* from Go */
	__type(key, struct sc_key);
	__type(value, struct sc_val);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384); /* from Go */
	__type(key, struct err_key);
	__type(value, __u64);
} errors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192); /* from Go */
	__type(key, struct path_key);
	__type(value, __u64);
} paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* from Go */
	__type(key, struct comm_key);
	__type(value, struct comm_val);
} comms SEC(".maps");

/* Rows each namespace has made, against rows_per_netns. Go resets a namespace's when it prunes it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* from Go */
	__type(key, __u32);
	__type(value, __u32);
} rows SEC(".maps");

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
const struct comm_key *unused_comm_key __attribute__((unused));
const struct comm_val *unused_comm_val __attribute__((unused));

/* The task's network namespace, if its calls are counted; 0 otherwise. The test that rejects
 * most calls comes first: the process when --pid is given, else the namespace, so that a call of
 * a namespace nobody traces costs what the least namespace filter costs (the counting floor of
 * tools/bench/syscalls) and touches no other line of its task. */
static __always_inline __u32 traced_netns(struct task_struct *task)
{
	if (filter_pid && task->tgid != filter_pid)
		return 0;
	__u32 netns = task_netns(task);
	if (!netns_wanted(netns))
		return 0;
	if (task->tgid == exclude_tgid || !comm_wanted(task))
		return 0;
	return netns ? netns : 1;
}

/* take_row charges one new row to the namespace's budget; false when it is spent. The count may
 * run a CPU's worth of racing inserts past the budget, never more. */
static __always_inline bool take_row(__u32 netns)
{
	__u32 *n = bpf_map_lookup_elem(&rows, &netns);
	if (!n) {
		__u32 none = 0;
		n = insert_or_find(&rows, &netns, &none);
		if (!n)
			return false;
	}
	if (*n >= rows_per_netns)
		return false;
	__sync_fetch_and_add(n, 1);
	return true;
}

/* counted returns the element of key in a counting map, making it when it is new, within the
 * namespace's budget (count.h). NULL: not counted, and lost says why. */
static __always_inline void *counted(void *map, void *key, void *zero, __u32 netns, __u32 full_reason)
{
	void *v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	if (!take_row(netns)) {
		note_lost(LOST_SC_BUDGET);
		return NULL;
	}
	v = insert_or_find(map, key, zero);
	if (!v)
		note_lost(full_reason);
	return v;
}

static __always_inline void remember_comm(struct task_struct *task, __u32 exec_id)
{
	struct comm_key ck = {.tgid = task->tgid, .exec_id = exec_id};
	if (bpf_map_lookup_elem(&comms, &ck))
		return;
	struct comm_val cv = {};
	process_comm(task, cv.comm);
	bpf_map_update_elem(&comms, &ck, &cv, BPF_NOEXIST);
}

/* The syscall number and first two arguments from the user registers, per architecture (CO-RE
 * flavors: vmlinux.h describes x86_64 only). At sys_exit they still hold what the call was given. */
#if defined(__TARGET_ARCH_arm64)
struct pt_regs___sockscope_arm64 {
	unsigned long regs[31];
	unsigned long orig_x0;
	int syscallno;
} __attribute__((preserve_access_index));
#define ARM64_REGS(r) ((struct pt_regs___sockscope_arm64 *)(r))
#define SYSCALL_NR(r) BPF_CORE_READ(ARM64_REGS(r), syscallno)
#define NR_RT_SIGRETURN 139
#define SYSCALL_ARG1(r) BPF_CORE_READ(ARM64_REGS(r), orig_x0)
#define SYSCALL_ARG2(r) BPF_CORE_READ(ARM64_REGS(r), regs[1])
#else
#define SYSCALL_NR(r) ((r)->orig_ax)
#define NR_RT_SIGRETURN 15
#define SYSCALL_ARG1(r) BPF_CORE_READ((r), di)
#define SYSCALL_ARG2(r) BPF_CORE_READ((r), si)
#endif

static __always_inline void count_path(struct pt_regs *regs, struct sc_key *key, __u32 netns)
{
	int arg = -1;
#pragma unroll
	for (int i = 0; i < PATH_SYSCALLS; i++) {
		if (path_nrs[i] == key->nr && key->nr != 0) {
			arg = path_args[i];
			break;
		}
	}
	if (arg < 0)
		return;
	const char *p = (const char *)(arg == 0 ? SYSCALL_ARG1(regs) : SYSCALL_ARG2(regs));
	__u32 zero = 0;
	struct path_key *k = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!k)
		return;
	__builtin_memset(k, 0, sizeof(*k));
	k->k = *key;
	if (bpf_probe_read_user_str(k->path, sizeof(k->path), p) < 0)
		return;
	__u64 none = 0;
	__u64 *n = counted(&paths, k, &none, netns, LOST_SC_PATHS);
	if (n)
		__sync_fetch_and_add(n, 1);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(on_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (!traced_netns(task))
		return 0;
	__u64 *ts = bpf_task_storage_get(&started, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (ts)
		*ts = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(on_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 netns = traced_netns(task);
	if (!netns)
		return 0;
	__u64 nr = SYSCALL_NR(regs);
	/* A return from a signal handler reaches sys_exit without a number: rt_sigreturn clears it,
	 * so that the call the signal interrupted is not restarted. It is counted as what it is. */
	if (nr == (__u64)-1)
		nr = NR_RT_SIGRETURN;
	struct sc_key key = {.netns = netns, .nr = nr < SC_NR_MAX ? (__u32)nr : SC_NR_INVALID};
	if (!by_netns) {
		key.tgid = task->tgid;
		key.exec_id = (__u32)task->self_exec_id;
	}
	struct sc_val zero = {};
	struct sc_val *v = bpf_map_lookup_elem(&counts, &key);
	if (!v) {
		/* A new row: its process's name, once; or, past the budget, the namespace's "other". */
		if (!by_netns)
			remember_comm(task, key.exec_id);
		v = counted(&counts, &key, &zero, netns, LOST_SC_COUNTS);
		if (!v) {
			struct sc_key other = {.netns = netns, .nr = SC_NR_OTHER};
			v = bpf_map_lookup_elem(&counts, &other);
			if (!v) /* outside any budget: one row per namespace */
				v = insert_or_find(&counts, &other, &zero);
			if (!v)
				return 0;
			key = other;
		}
	}
	v->count++;
	if (ret < 0 && ret >= -4095) {
		v->errors++;
		struct err_key ek = {.k = key, .err = (__s32)-ret};
		__u64 none = 0;
		__u64 *n = counted(&errors, &ek, &none, netns, LOST_SC_ERRORS);
		if (n)
			*n += 1;
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
	if (want_paths && key.nr != SC_NR_OTHER)
		count_path(regs, &key, netns);
	return 0;
}
