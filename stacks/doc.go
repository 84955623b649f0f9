// Package stacks turns a user-stack sample taken at a syscall into a symbolized stack, the way
// `perf record --call-graph dwarf` does in user space: the kernel side copies the user registers
// and the top of the user stack; this package finds each frame's caller from the mapped object's
// call frame information (.eh_frame, .debug_frame; package cfi), falls back to the frame-pointer
// chain where a frame has none (JIT code), and names the frames from the objects' symbol tables
// (read through /proc/PID/root, so binaries that exist only inside a container work) and from
// perf maps for JIT code. A stack that cannot be followed to its end is marked truncated; no
// frame is ever guessed.
//
// # What the kernel side delivers (Sample)
//
// At the syscall (raw_syscalls:sys_enter or a syscalls:sys_enter_* tracepoint), the BPF program
// copies, for the current task:
//   - the whole struct pt_regs of the user context (task_pt_regs(current), or the tracepoint's
//     regs argument): 168 bytes on x86_64 (PtRegsSizeAMD64), decoded by RegsFromPtRegs. Every
//     general purpose register is needed, not only rip/rsp/rbp: CFI may compute the CFA from
//     r10 or rbp (stack realignment) and saves callee-saved registers that later frames use.
//     arm64 would send struct user_pt_regs (x0-x30, sp, pc, pstate: PtRegsSizeARM64).
//   - the user stack from the stack pointer upward, up to MaxStackCopy (16 KB), with
//     bpf_probe_read_user. That helper fails as a whole when any byte is unreadable, and the
//     stack's mapping often ends less than 16 KB above sp (a main thread's stack holds its
//     environment just above main's frame): read it in page-sized chunks from sp, stop at the
//     first chunk that fails, and send the length actually read. Stack is that valid prefix.
//   - the TGID as PID (in the reader's PID namespace, what bpf_get_current_pid_tgid gives in
//     the initial namespace), the TID, and optionally the group leader's start_boottime as
//     StartTime, which lets the unwinder refuse a sample whose PID was reused by the time it is
//     read.
//
// The mappings are not in the sample: the unwinder reads /proc/PID/maps when it first sees a
// process, and again when an address is in none of its mappings (a library loaded since), and
// keeps them, and the objects opened through them, after the process exits. Samples must be
// resolved while the process (or at least its first sample's resolution) is alive: resolve in
// the ring buffer reader as events arrive, and record resolved stacks, not raw samples, for
// `report` (the objects may be gone by then, and the container with them).
//
// # JIT code
//
// Frames of JIT code are named from the perf map the runtime writes, /tmp/perf-NSPID.map inside
// the process's root, NSPID being its PID in its own namespace (NSpid in /proc/PID/status). JIT
// code has no CFI; it is unwound through the frame-pointer chain, which V8 keeps. Tested: node 20
// with --perf-basic-prof --interpreted-frames-native-stack names every JavaScript frame, and the
// stacks run complete from libc through V8's builtins and the JavaScript frames to main and
// _start. With --perf-basic-prof alone, functions still run by the bytecode interpreter have no
// code object of their own and show as Builtin:InterpreterEntryTrampoline until V8 compiles
// them (in the test, the first 21 of 300 calls). Without a perf map, JIT frames show as
// [unknown] (anonymous memory) and builtins as node+0xoffset. Other runtimes that write perf
// maps (Java with a perf-map agent, Python 3.12+ with -X perf) are read the same way, but have
// not been tested: neither a perf-map agent nor Python 3.12 is on the test machines.
package stacks
