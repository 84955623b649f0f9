/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The --comm predicate, one definition for trace, record, syscalls and their stacks: DTrace's
 * /execname == "node"/, in the kernel.
 *
 * The name compared is the process's: its main thread's command name, as `ps -o comm` shows it and
 * as every sockscope output names a process. A thread's own name (a JVM's "C2 CompilerThre", a
 * node process's "libuv-worker") is not it, so `--comm java` selects every thread of the JVM. Go
 * zero-pads the names given to 16 bytes; the kernel's name is zero-padded too, and the two are
 * compared as two words each, with no string loop. */
#ifndef SOCKSCOPE_COMM_H
#define SOCKSCOPE_COMM_H

#define COMM_FILTERS 8

/* Set from Go before load: how many names are given, and the names. */
const volatile __u32 comm_count = 0;
const volatile __u64 comm_names[COMM_FILTERS][2] = {};

/* process_comm reads the name of task's process into comm. */
static __always_inline void process_comm(struct task_struct *task, void *comm)
{
	bpf_probe_read_kernel(comm, 16, task->group_leader->comm);
}

/* comm_wanted tells whether task's process has one of the names given (true when none is). */
static __always_inline bool comm_wanted(struct task_struct *task)
{
	if (!comm_count)
		return true;
	__u64 comm[2] = {};
	process_comm(task, comm);
#pragma unroll
	for (int i = 0; i < COMM_FILTERS; i++) {
		if (i >= comm_count)
			return false;
		if (comm[0] == comm_names[i][0] && comm[1] == comm_names[i][1])
			return true;
	}
	return false;
}

#endif
