// Package stacks loads the stack sampler (bpf/stacks.bpf.c): at a syscall, the registers and
// the top of the user stack, copied to a ring buffer for stacks/ to unwind in user space.
package stacks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/sockscope/sockscope/loader"
)

// Config selects the syscalls whose user stacks `syscalls --stacks` copies.
type Config struct {
	FilterNetns bool
	Netns       []uint32
	Pid         uint32
	// Syscalls, when not empty, are the only syscall numbers sampled.
	Syscalls []uint32
	// Comms, when not empty, are the only processes sampled, by name (at most MaxCommFilters;
	// the kernel keeps 15 bytes of a name, and so does the filter; bpf/comm.h).
	Comms []string
	// RatePerCPU bounds the samples each CPU sends per second; 0 sends every matching call.
	RatePerCPU uint32
	// KernelStacks also copies the kernel stack (return addresses, for /proc/kallsyms).
	KernelStacks bool
}

// MaxSyscallNr is the largest syscall number the syscall filter holds.
const MaxSyscallNr = 1023

// Sample is one syscall entry's copy of the user registers and stack. Regs, Stack and Kernel
// point into the reader's buffer: they are valid until the next ReadInto.
type Sample struct {
	PID, TID  uint32
	Netns, Nr uint32
	Comm      string
	// StartTime is the process's start_boottime, in nanoseconds since boot.
	StartTime uint64
	// Regs is the kernel's user-register layout (x86_64 pt_regs, arm64 user_pt_regs); empty when
	// they could not be read.
	Regs []byte
	// Stack is the user memory from the stack pointer up, as far as it could be read.
	Stack []byte
	// Kernel holds the kernel return addresses, innermost first (with KernelStacks).
	Kernel []uint64
	// KernelErr is the errno of a kernel stack that could not be read, 0 otherwise.
	KernelErr int32
}

// Stats counts what happened to the calls that matched every filter, since attaching.
type Stats struct {
	Matched uint64 // calls that passed every filter
	Sampled uint64 // of those, copied to user space
	Rate    uint64 // skipped by the rate limit
	Lost    uint64 // lost because the ring buffer was full
}

// Sampler is the attached stack sampler.
type Sampler struct {
	objs   stacksObjects
	link   link.Link
	reader *ringbuf.Reader
	netns  *loader.NetnsTable
	rec    ringbuf.Record
}

// The record's layout, from the generated binding of struct stack_sample.
var (
	stOffTgid      = unsafe.Offsetof(stacksStackSample{}.Tgid)
	stOffTid       = unsafe.Offsetof(stacksStackSample{}.Tid)
	stOffNetns     = unsafe.Offsetof(stacksStackSample{}.Netns)
	stOffNr        = unsafe.Offsetof(stacksStackSample{}.Nr)
	stOffStackLen  = unsafe.Offsetof(stacksStackSample{}.StackLen)
	stOffRegsLen   = unsafe.Offsetof(stacksStackSample{}.RegsLen)
	stOffKstackLen = unsafe.Offsetof(stacksStackSample{}.KstackLen)
	stOffComm      = unsafe.Offsetof(stacksStackSample{}.Comm)
	stOffRegs      = unsafe.Offsetof(stacksStackSample{}.Regs)
	stOffKstack    = unsafe.Offsetof(stacksStackSample{}.Kstack)
	stOffStack     = unsafe.Offsetof(stacksStackSample{}.Stack)
	stSize         = unsafe.Sizeof(stacksStackSample{})
)

// Open loads and attaches the stack sampler on sys_enter. Call Close to detach.
func Open(cfg Config) (*Sampler, error) {
	if err := loader.Memlock(); err != nil {
		return nil, err
	}
	spec, err := loadStacks()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	var sp stacksSpecs
	if err := loader.AssignSpecs(spec, &sp, "stacks"); err != nil {
		return nil, err
	}
	if err := (loader.CommSpecs{Count: sp.CommCount, Names: sp.CommNames}).Set(cfg.Comms); err != nil {
		return nil, err
	}
	if err := loader.SetConstants(
		loader.Const(sp.FilterSyscall, len(cfg.Syscalls) > 0), loader.Const(sp.FilterPid, cfg.Pid),
		loader.Const(sp.ExcludeTgid, uint32(os.Getpid())), loader.Const(sp.RatePerCpu, cfg.RatePerCPU),
		loader.Const(sp.WantKstack, cfg.KernelStacks),
	); err != nil {
		return nil, err
	}
	if err := (loader.NetnsSpecs{Direct: sp.NetnsDirect, Overflow: sp.NetnsOverflow, Mask: sp.NetnsMask, Filter: sp.FilterNetns}).Size(maxStacksNetns, cfg.FilterNetns); err != nil {
		return nil, err
	}
	s := &Sampler{}
	if err := spec.LoadAndAssign(&s.objs, loader.LoadOptions()); err != nil {
		return nil, loader.Missing("load the stack sampler", err, loader.NeedBTF, loader.NeedTpBTF, loader.NeedRingBuf)
	}
	s.netns = loader.NewNetnsTable(s.objs.NetnsDirect, s.objs.NetnsOverflow, s.objs.NetnsFew, maxStacksNetns)
	for _, nr := range cfg.Syscalls {
		if nr > MaxSyscallNr {
			s.Close()
			return nil, fmt.Errorf("syscall number %d is above %d", nr, MaxSyscallNr)
		}
		if err := s.objs.SyscallFilter.Put(nr, uint8(1)); err != nil {
			s.Close()
			return nil, fmt.Errorf("set the syscall filter: %w", err)
		}
	}
	if err := s.SetNetns(cfg.Netns); err != nil {
		s.Close()
		return nil, err
	}
	if s.reader, err = ringbuf.NewReader(s.objs.Samples); err != nil {
		s.Close()
		return nil, fmt.Errorf("open the stack samples' ring buffer: %w", err)
	}
	if s.link, err = link.AttachTracing(link.TracingOptions{Program: s.objs.OnEnter}); err != nil {
		s.Close()
		return nil, loader.Missing("attach raw tracepoint (tp_btf) sys_enter", err, loader.NeedTpBTF)
	}
	return s, nil
}

// maxStacksNetns is how many namespaces the sampler selects at once (the size its own hash had).
const maxStacksNetns = 4096

// SetNetns replaces the set of sampled network namespaces (used only with FilterNetns).
func (s *Sampler) SetNetns(inodes []uint32) error {
	_, err := s.netns.SelectAll(inodes)
	return err
}

// ErrClosed is returned by ReadInto after Close.
var ErrClosed = errors.New("stack sampler closed")

// ReadInto waits for the next sample and decodes it into out, whose slices then point into the
// reader's buffer until the next call.
func (s *Sampler) ReadInto(out *Sample) error {
	if err := s.reader.ReadInto(&s.rec); err != nil {
		if errors.Is(err, ringbuf.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("read a stack sample: %w", err)
	}
	return decodeStackSample(s.rec.RawSample, out)
}

func decodeStackSample(b []byte, out *Sample) error {
	if uintptr(len(b)) < stSize {
		return fmt.Errorf("stack sample of %d bytes, want %d", len(b), stSize)
	}
	u32 := func(off uintptr) uint32 { return binary.NativeEndian.Uint32(b[off:]) }
	*out = Sample{
		StartTime: binary.NativeEndian.Uint64(b[0:]),
		PID:       u32(stOffTgid), TID: u32(stOffTid), Netns: u32(stOffNetns), Nr: u32(stOffNr),
	}
	comm := b[stOffComm : stOffComm+16]
	for i, c := range comm {
		if c == 0 {
			comm = comm[:i]
			break
		}
	}
	out.Comm = string(comm)
	regsLen := uintptr(min(u32(stOffRegsLen), uint32(stOffKstack-stOffRegs)))
	out.Regs = b[stOffRegs : stOffRegs+regsLen]
	stackLen := uintptr(min(u32(stOffStackLen), uint32(stSize-stOffStack)))
	out.Stack = b[stOffStack : stOffStack+stackLen]
	klen := int32(u32(stOffKstackLen))
	if klen < 0 {
		out.KernelErr = -klen
	} else {
		n := min(uintptr(klen)/8, (stOffStack-stOffKstack)/8)
		out.Kernel = make([]uint64, 0, n)
		for i := uintptr(0); i < n; i++ {
			if pc := binary.NativeEndian.Uint64(b[stOffKstack+8*i:]); pc != 0 {
				out.Kernel = append(out.Kernel, pc)
			}
		}
	}
	return nil
}

// Stats sums the per-CPU counters.
func (s *Sampler) Stats() (Stats, error) {
	var st Stats
	dst := []*uint64{&st.Matched, &st.Sampled, &st.Rate, &st.Lost}
	var per []uint64
	for i, d := range dst {
		if err := s.objs.Stats.Lookup(uint32(i), &per); err != nil {
			return st, fmt.Errorf("read the stack sampler's counters: %w", err)
		}
		for _, v := range per {
			*d += v
		}
	}
	return st, nil
}

// Detach stops sampling; samples already in the ring can still be read.
func (s *Sampler) Detach() {
	if s.link != nil {
		s.link.Close()
		s.link = nil
	}
}

// Close detaches the program, ends ReadInto and frees the maps.
func (s *Sampler) Close() error {
	s.Detach()
	if s.reader != nil {
		s.reader.Close()
	}
	return s.objs.Close()
}

// SetDeadline makes ReadInto return an error wrapping os.ErrDeadlineExceeded once t has passed
// and the ring is empty: after Detach, what was sampled can be drained.
func (s *Sampler) SetDeadline(t time.Time) { s.reader.SetDeadline(t) }

// Pending is the number of bytes of samples waiting in the ring.
func (s *Sampler) Pending() int {
	if s.reader == nil {
		return 0
	}
	return s.reader.AvailableBytes()
}
