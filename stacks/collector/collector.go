// Package collector reads the user-stack samples the kernel side copies at syscalls (loader/stacks)
// as they arrive, unwinds and names them while their processes are alive (package stacks), and
// counts them per (network namespace, comm, syscall, stack): what `syscalls --stacks` prints and
// `record --stacks` stores.
package collector

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	kstacks "github.com/sockscope/sockscope/loader/stacks"
	"github.com/sockscope/sockscope/stacks"
)

// DefaultRate is how many stacks each CPU copies per second when no --syscall or --comm
// filter selects the calls: enough for a profile, bounded for a host's every syscall.
const DefaultRate = 200

// Collector reads the stack samples of `syscalls --stacks` and `record --stacks` as they arrive, unwinds and names
// them while their processes are alive, and counts them per (container, comm, syscall, stack).
type Collector struct {
	s     *kstacks.Sampler
	u     *stacks.Unwinder
	kern  *stacks.Kallsyms
	arch  stacks.Arch
	exact bool // every matching call is copied (a --syscall or --comm filter)
	rate  uint32

	mu         sync.Mutex
	counts     stacks.Counts     // labels: netns, comm, syscall
	unresolved map[string]uint64 // why a sample could not be unwound -> samples
	prevStats  kstacks.Stats
	done       chan struct{}
	stopping   atomic.Bool
}

// Row is one distinct stack of one (netns, comm, syscall), as Take returns it.
type Row struct {
	Netns         uint32
	Comm, Syscall string
	Counted       *stacks.Counted
}

// Arch is the architecture whose user stacks can be unwound here, or an error saying it cannot.
func Arch() (stacks.Arch, error) {
	switch runtime.GOARCH {
	case "amd64":
		return stacks.AMD64, nil
	}
	return 0, fmt.Errorf("--stacks: unwinding user stacks is implemented for x86_64 only, not %s", runtime.GOARCH)
}

// Options select the calls whose stacks are collected (syscalls --stacks, record --stacks).
type Options struct {
	Pid      int
	Comms    []string
	Syscalls []string // names, checked by the caller
	Kernel   bool     // also copy and name kernel frames
	Rate     uint32   // per CPU per second, without a syscall or comm filter
}

// Open attaches the sampler to the namespaces of sc and starts reading; warnings go to stderr.
func Open(o Options, sc *containers.Scope, stderr io.Writer) (*Collector, error) {
	arch, err := Arch()
	if err != nil {
		return nil, err
	}
	cfg := kstacks.Config{FilterNetns: sc.Filtered(), Netns: sc.FixedInodes(), Pid: uint32(o.Pid), Comms: o.Comms, KernelStacks: o.Kernel}
	for _, name := range o.Syscalls {
		nr, _ := events.SyscallNumber(runtime.GOARCH, name)
		cfg.Syscalls = append(cfg.Syscalls, nr)
	}
	exact := len(cfg.Syscalls) > 0 || len(cfg.Comms) > 0
	if !exact {
		cfg.RatePerCPU = o.Rate
	}
	s, err := kstacks.Open(cfg)
	if err != nil {
		return nil, err
	}
	c := &Collector{s: s, u: stacks.New(stacks.Options{}), arch: arch, exact: exact, rate: cfg.RatePerCPU,
		unresolved: map[string]uint64{}, done: make(chan struct{})}
	if o.Kernel {
		if c.kern, err = stacks.LoadKallsyms("/proc/kallsyms"); err != nil {
			fmt.Fprintf(stderr, "sockscope: warning: kernel frames will not be named: %v\n", err)
		}
	}
	go c.run()
	return c, nil
}

// run reads until Close, or until stop and the ring is empty. A deadline set while a read waits
// does not wake it, so reads wait at most 100 ms and the stop flag is checked in between.
func (c *Collector) run() {
	defer close(c.done)
	var smp kstacks.Sample
	for {
		c.s.SetDeadline(time.Now().Add(100 * time.Millisecond))
		err := c.s.ReadInto(&smp)
		if errors.Is(err, kstacks.ErrClosed) {
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if c.stopping.Load() {
				return
			}
			continue
		}
		if err != nil {
			c.note(err.Error())
			continue
		}
		c.add(&smp)
	}
}

func (c *Collector) note(why string) {
	c.mu.Lock()
	c.unresolved[why]++
	c.mu.Unlock()
}

func (c *Collector) add(smp *kstacks.Sample) {
	regs, err := stacks.RegsFromPtRegs(c.arch, smp.Regs)
	if err != nil {
		c.note("registers not copied")
		return
	}
	st, err := c.u.Resolve(&stacks.Sample{PID: smp.PID, TID: smp.TID, Arch: c.arch, Regs: regs, Stack: smp.Stack, StartTime: smp.StartTime})
	if err != nil {
		c.note(unwindFailure(err))
		return
	}
	if len(smp.Kernel) > 0 {
		st.Frames = append(kernelFrames(c.kern.Frames(smp.Kernel)), st.Frames...)
	}
	labels := []string{strconv.FormatUint(uint64(smp.Netns), 10), smp.Comm, events.SyscallName(runtime.GOARCH, smp.Nr)}
	c.mu.Lock()
	c.counts.Add(labels, st, 1)
	c.mu.Unlock()
}

// kernelFrames leaves out the innermost kernel frames that are sockscope's own: the BPF program
// and the tracepoint's path to it, down to the syscall's entry.
func kernelFrames(fs []stacks.Frame) []stacks.Frame {
	for i, f := range fs {
		if f.Symbol == "syscall_trace_enter" || strings.HasPrefix(f.Symbol, "syscall_trace_enter.") {
			return fs[i+1:]
		}
	}
	for len(fs) > 0 && (strings.HasPrefix(fs[0].Symbol, "bpf_") || strings.HasPrefix(fs[0].Symbol, "__bpf_") || strings.HasPrefix(fs[0].Symbol, "__traceiter_")) {
		fs = fs[1:]
	}
	return fs
}

// unwindFailure is the reason counted for a sample that could not be unwound, without the PID
// that would make every process its own line.
func unwindFailure(err error) string {
	msg := err.Error()
	for _, gone := range []string{"no such file", "no mappings", "no such process"} {
		if strings.Contains(msg, gone) {
			return "the process exited before its first stack was read (its mappings are read from /proc then)"
		}
	}
	return pidInMessage.ReplaceAllString(msg, "${1}PID")
}

var pidInMessage = regexp.MustCompile(`(process |/proc/)[0-9]+`)

// Stop detaches the sampler and waits until what it copied has been read.
func (c *Collector) Stop() {
	c.s.Detach()
	c.stopping.Store(true)
	<-c.done
}

// Close detaches the sampler and frees what it holds.
func (c *Collector) Close() {
	c.s.Close()
	<-c.done
	c.u.Close()
}

// Take returns the stacks counted since the last Take, highest count first, with the sampler's
// counters over the same span.
func (c *Collector) Take() ([]*Row, map[string]uint64, kstacks.Stats, error) {
	st, err := c.s.Stats()
	if err != nil {
		return nil, nil, st, err
	}
	c.mu.Lock()
	counts, unresolved := c.counts, c.unresolved
	c.counts, c.unresolved = stacks.Counts{}, map[string]uint64{}
	prev := c.prevStats
	c.prevStats = st
	c.mu.Unlock()
	sorted := counts.Sorted()
	rows := make([]*Row, len(sorted))
	for i, e := range sorted {
		netns, _ := strconv.ParseUint(e.Labels[0], 10, 32)
		rows[i] = &Row{Netns: uint32(netns), Comm: e.Labels[1], Syscall: e.Labels[2], Counted: e}
	}
	d := kstacks.Stats{Matched: st.Matched - prev.Matched, Sampled: st.Sampled - prev.Sampled, Rate: st.Rate - prev.Rate, Lost: st.Lost - prev.Lost}
	return rows, unresolved, d, nil
}

// Summary says how the counted stacks relate to the calls: all of them, or a sample.
func (c *Collector) Summary(st kstacks.Stats, unresolved map[string]uint64) string {
	var b strings.Builder
	if c.exact {
		fmt.Fprintf(&b, "stacks: %d calls matched, every one copied (a --syscall or --comm filter)", st.Matched)
	} else {
		ratio := "none"
		if st.Sampled > 0 {
			ratio = fmt.Sprintf("1 in %.1f", float64(st.Matched)/float64(st.Sampled))
		}
		fmt.Fprintf(&b, "stacks: sampled %d of %d calls (%s; at most %d per CPU per second; --syscall or --comm counts every call)", st.Sampled, st.Matched, ratio, c.rate)
	}
	if st.Lost > 0 {
		fmt.Fprintf(&b, "; %d not copied: the ring buffer was full", st.Lost)
	}
	reasons := make([]string, 0, len(unresolved))
	for why := range unresolved {
		reasons = append(reasons, why)
	}
	sort.Strings(reasons)
	for _, why := range reasons {
		fmt.Fprintf(&b, "; %d not unwound: %s", unresolved[why], events.Printable(why))
	}
	return b.String()
}

// SetNetns sets the namespaces whose calls are sampled (with a filtered scope).
func (c *Collector) SetNetns(inodes []uint32) error { return c.s.SetNetns(inodes) }

// Exact tells whether every matching call is copied (a syscall or comm filter), not a sample.
func (c *Collector) Exact() bool { return c.exact }

// Rate is how many stacks each CPU copies per second when sampling; 0 when Exact.
func (c *Collector) Rate() uint32 { return c.rate }
