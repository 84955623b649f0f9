package stacks

import (
	"encoding/binary"
	"fmt"
)

// Arch is the instruction set of the sampled process.
type Arch uint8

const (
	// AMD64 is x86_64, fully supported.
	AMD64 Arch = iota + 1
	// ARM64 is AArch64. Its registers and CFI rules are decoded (pointer authentication
	// included), but it has not been run on real arm64 processes: Unwind refuses it with
	// ErrArchUnsupported until it has been.
	ARM64
)

func (a Arch) String() string {
	switch a {
	case AMD64:
		return "x86_64"
	case ARM64:
		return "arm64"
	}
	return fmt.Sprintf("arch(%d)", a)
}

// NumRegs is the size of Regs: DWARF registers 0-32 cover x86_64's general purpose registers and
// rip (0-16) and arm64's x0-x30, sp and pc (0-32).
const NumRegs = 33

// DWARF register numbers (System V x86_64 psABI 3.6.2, and AADWARF64).
const (
	AMD64RAX = 0
	AMD64RDX = 1
	AMD64RCX = 2
	AMD64RBX = 3
	AMD64RSI = 4
	AMD64RDI = 5
	AMD64RBP = 6
	AMD64RSP = 7
	AMD64R8  = 8
	AMD64R15 = 15
	AMD64RIP = 16 // the return address column

	ARM64X29 = 29 // frame pointer
	ARM64X30 = 30 // link register, the return address column
	ARM64SP  = 31
	ARM64PC  = 32
)

// Regs holds a thread's user registers, indexed by DWARF register number.
type Regs [NumRegs]uint64

// Sample is what the kernel side captures at a syscall: the thread, its user registers, and a
// copy of its user stack from the stack pointer upward.
type Sample struct {
	// PID is the thread group ID in the host's (the reader's) PID namespace: /proc/PID is read
	// for the process's mappings, its root and its perf map.
	PID uint32
	// TID is the thread's ID (informational).
	TID  uint32
	Arch Arch
	// Regs are the user registers at syscall entry (task_pt_regs(current)), every general
	// purpose register: CFI may base the CFA on any of them (stack realignment uses r10 or
	// rbp, signal frames rsp).
	Regs Regs
	// Stack is the user memory [SP, SP+len(Stack)), as many bytes as could be read: the BPF
	// program copies up to MaxStackCopy bytes, and fewer when the stack's mapping ends sooner.
	Stack []byte
	// StartTime, when not zero, is the process's start time as the kernel keeps it
	// (task->group_leader->start_boottime, nanoseconds since boot). It lets the unwinder tell
	// the sampled process from a later one that reused its PID.
	StartTime uint64
}

// MaxStackCopy is the stack copy size this package is designed for: perf's default is 8 KB;
// 16 KB covers the deepest C++ stacks seen in node between a syscall and main.
const MaxStackCopy = 16 << 10

// PC returns the sampled instruction pointer.
func (s *Sample) PC() uint64 { return s.Regs[pcReg(s.Arch)] }

// SP returns the sampled stack pointer, the address of Stack[0].
func (s *Sample) SP() uint64 { return s.Regs[spReg(s.Arch)] }

func pcReg(a Arch) int {
	if a == ARM64 {
		return ARM64PC
	}
	return AMD64RIP
}

func spReg(a Arch) int {
	if a == ARM64 {
		return ARM64SP
	}
	return AMD64RSP
}

func fpReg(a Arch) int {
	if a == ARM64 {
		return ARM64X29
	}
	return AMD64RBP
}

// PtRegsSizeAMD64 is the size of x86_64's struct pt_regs (21 registers of 8 bytes), which is also
// the first part of the struct user_regs_struct that PTRACE_GETREGS returns.
const PtRegsSizeAMD64 = 21 * 8

// PtRegsSizeARM64 is the size of arm64's struct user_pt_regs (x0-x30, sp, pc, pstate), the first
// part of its struct pt_regs and what PTRACE_GETREGSET NT_PRSTATUS returns.
const PtRegsSizeARM64 = 34 * 8

// RegsFromPtRegs decodes the kernel's register layout for arch as a BPF program copies it from
// task_pt_regs() (little-endian, in the machine's order): x86_64's struct pt_regs, arm64's
// struct user_pt_regs. Longer input (user_regs_struct's segment registers) is ignored.
func RegsFromPtRegs(arch Arch, b []byte) (Regs, error) {
	var r Regs
	le := binary.LittleEndian
	switch arch {
	case AMD64:
		if len(b) < PtRegsSizeAMD64 {
			return r, fmt.Errorf("x86_64 pt_regs: %d bytes, want %d", len(b), PtRegsSizeAMD64)
		}
		// struct pt_regs: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs
		// flags sp ss.
		order := [...]int{15, 14, 13, 12, AMD64RBP, AMD64RBX, 11, 10, 9, 8, AMD64RAX, AMD64RCX, AMD64RDX, AMD64RSI, AMD64RDI, -1, AMD64RIP, -1, -1, AMD64RSP, -1}
		for i, reg := range order {
			if reg >= 0 {
				r[reg] = le.Uint64(b[i*8:])
			}
		}
	case ARM64:
		if len(b) < PtRegsSizeARM64 {
			return r, fmt.Errorf("arm64 user_pt_regs: %d bytes, want %d", len(b), PtRegsSizeARM64)
		}
		for i := 0; i < 31; i++ {
			r[i] = le.Uint64(b[i*8:])
		}
		r[ARM64SP] = le.Uint64(b[31*8:])
		r[ARM64PC] = le.Uint64(b[32*8:])
	default:
		return r, fmt.Errorf("%w: %s", ErrArchUnsupported, arch)
	}
	return r, nil
}
