//go:build linux && amd64

// Package ptcap captures, with ptrace, exactly what sockscope's BPF program will capture at a
// syscall: the thread's struct pt_regs and the bytes of its user stack from the stack pointer
// upward. The tests and benchmarks of package stacks feed these samples to the unwinder, so that
// it is proven on real processes before the kernel side exists.
package ptcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sample is one capture at a syscall entry.
type Sample struct {
	PID, TID int
	Nr       uint64   // the syscall number
	Args     []uint64 // its six arguments
	PtRegs   []byte   // x86_64 struct pt_regs, 21 × 8 bytes, as task_pt_regs() holds it
	Stack    []byte   // user memory from rsp upward, up to the size asked, cut where the mapping ends
}

// Options say what to capture.
type Options struct {
	// Syscall is the number of the syscall at whose entry samples are taken (unix.SYS_OPENAT).
	Syscall uint64
	// StackSize is how much of the stack to copy (16 KB as the BPF program will).
	StackSize int
	// StopAt ends the capture at the entry of this syscall when its first argument is
	// StopArg (the traced program announces the end of its work with write(1, ...)). The
	// thread is detached there and runs on.
	StopAt, StopArg uint64
	// Attached is called once the thread is traced, on the tracing goroutine: start the
	// work there (write the traced program's start byte).
	Attached func()
}

// Capture seizes thread tid of process pid (which must be waiting for Attached to start its
// work), and records a Sample at every entry of opts.Syscall until the StopAt syscall or the
// thread's exit.
func Capture(pid, tid int, opts Options) ([]Sample, error) {
	type result struct {
		samples []Sample
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		// Every ptrace request must come from the thread that attached.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		s, err := capture(pid, tid, opts)
		ch <- result{s, err}
	}()
	r := <-ch
	return r.samples, r.err
}

func ptrace(req, pid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(pid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func capture(pid, tid int, opts Options) ([]Sample, error) {
	if err := ptrace(unix.PTRACE_SEIZE, tid, 0, unix.PTRACE_O_TRACESYSGOOD|unix.PTRACE_O_EXITKILL); err != nil {
		return nil, fmt.Errorf("PTRACE_SEIZE %d: %w", tid, err)
	}
	detached := false
	defer func() {
		if !detached {
			ptrace(unix.PTRACE_DETACH, tid, 0, 0)
		}
	}()
	if err := ptrace(unix.PTRACE_INTERRUPT, tid, 0, 0); err != nil {
		return nil, fmt.Errorf("PTRACE_INTERRUPT: %w", err)
	}
	if _, err := wait(tid); err != nil {
		return nil, err
	}
	if err := ptrace(unix.PTRACE_SYSCALL, tid, 0, 0); err != nil {
		return nil, err
	}
	if opts.Attached != nil {
		opts.Attached()
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	var samples []Sample
	for {
		ws, err := wait(tid)
		if err != nil {
			return samples, err
		}
		if ws.Exited() || ws.Signaled() {
			detached = true
			return samples, nil
		}
		if !ws.Stopped() {
			continue
		}
		sig := 0
		switch {
		case ws.StopSignal() == syscall.SIGTRAP|0x80:
			info, err := syscallInfo(tid)
			if err != nil {
				return samples, err
			}
			if info.op == unix.PTRACE_SYSCALL_INFO_ENTRY {
				if info.nr == opts.StopAt && info.args[0] == opts.StopArg {
					if err := ptrace(unix.PTRACE_DETACH, tid, 0, 0); err != nil {
						return samples, err
					}
					detached = true
					return samples, nil
				}
				if info.nr == opts.Syscall {
					s, err := sample(pid, tid, mem, opts.StackSize)
					if err != nil {
						return samples, err
					}
					s.Nr, s.Args = info.nr, info.args[:]
					samples = append(samples, s)
				}
			}
		case ws.TrapCause() == unix.PTRACE_EVENT_STOP:
			// A group-stop or our own interrupt: resume.
		default:
			sig = int(ws.StopSignal()) // deliver the signal the thread got
		}
		if err := ptrace(unix.PTRACE_SYSCALL, tid, 0, uintptr(sig)); err != nil {
			return samples, err
		}
	}
}

func wait(tid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return ws, err
	}
}

type sysInfo struct {
	op   uint8
	nr   uint64
	args [6]uint64
}

// syscallInfo asks PTRACE_GET_SYSCALL_INFO (Linux 5.3) whether the stop is an entry or an exit,
// which counting stops cannot tell after a seize in the middle of a syscall.
func syscallInfo(tid int) (sysInfo, error) {
	var buf [88]byte
	if err := ptrace(unix.PTRACE_GET_SYSCALL_INFO, tid, uintptr(len(buf)), uintptr(unsafe.Pointer(&buf[0]))); err != nil {
		return sysInfo{}, fmt.Errorf("PTRACE_GET_SYSCALL_INFO: %w", err)
	}
	le := binary.LittleEndian
	si := sysInfo{op: buf[0], nr: le.Uint64(buf[24:])}
	for i := range si.args {
		si.args[i] = le.Uint64(buf[32+8*i:])
	}
	return si, nil
}

// sample reads the registers (struct user_regs_struct, whose first 21 words are struct pt_regs)
// and the stack.
func sample(pid, tid int, mem *os.File, size int) (Sample, error) {
	var regs [27]uint64
	if err := ptrace(unix.PTRACE_GETREGS, tid, 0, uintptr(unsafe.Pointer(&regs[0]))); err != nil {
		return Sample{}, fmt.Errorf("PTRACE_GETREGS: %w", err)
	}
	raw := make([]byte, 21*8)
	for i := 0; i < 21; i++ {
		binary.LittleEndian.PutUint64(raw[i*8:], regs[i])
	}
	rsp := regs[19]
	return Sample{PID: pid, TID: tid, PtRegs: raw, Stack: ReadStack(mem, rsp, size)}, nil
}

// ReadStack copies up to size bytes at sp, stopping at the first page that cannot be read (the
// end of the stack's mapping): the valid prefix, as the BPF program delivers it by reading page-
// sized chunks until one fails.
func ReadStack(mem *os.File, sp uint64, size int) []byte {
	buf := make([]byte, size)
	n := 0
	for n < size {
		// Up to the next page boundary, so that one unreadable page does not lose the rest.
		chunk := int(4096 - (sp+uint64(n))%4096)
		if chunk > size-n {
			chunk = size - n
		}
		m, err := mem.ReadAt(buf[n:n+chunk], int64(sp+uint64(n)))
		n += m
		if err != nil || m < chunk {
			break
		}
	}
	return buf[:n]
}
