package main

import (
	"encoding/json"
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
	"github.com/sockscope/sockscope/loader"
	"github.com/sockscope/sockscope/recording"
	"github.com/sockscope/sockscope/stacks"
)

// defaultStackRate is how many stacks each CPU copies per second when no --syscall or --comm
// filter selects the calls: enough for a profile, bounded for a host's every syscall.
const defaultStackRate = 200

// stackCollector reads the stack samples of `syscalls --stacks` as they arrive, unwinds and names
// them while their processes are alive, and counts them per (container, comm, syscall, stack).
type stackCollector struct {
	s     *loader.Stacks
	u     *stacks.Unwinder
	kern  *stacks.Kallsyms
	arch  stacks.Arch
	names namer
	exact bool // every matching call is copied (a --syscall or --comm filter)
	rate  uint32

	mu         sync.Mutex
	counts     stacks.Counts     // labels: netns, comm, syscall
	unresolved map[string]uint64 // why a sample could not be unwound -> samples
	prevStats  loader.StackStats
	done       chan struct{}
	stopping   atomic.Bool
}

// stackRow is one distinct stack of one (netns, comm, syscall), as take returns it.
type stackRow struct {
	netns         uint32
	comm, syscall string
	counted       *stacks.Counted
}

func stackArch() (stacks.Arch, error) {
	switch runtime.GOARCH {
	case "amd64":
		return stacks.AMD64, nil
	}
	return 0, fmt.Errorf("--stacks: unwinding user stacks is implemented for x86_64 only, not %s", runtime.GOARCH)
}

// stackOptions select the calls whose stacks are collected (syscalls --stacks, record --stacks).
type stackOptions struct {
	pid      int
	comms    []string
	syscalls []string // names, checked by the caller
	kernel   bool
	rate     uint32 // per CPU per second, without a syscall or comm filter
}

func openStackCollector(o stackOptions, sc *containers.Scope, stderr io.Writer) (*stackCollector, error) {
	arch, err := stackArch()
	if err != nil {
		return nil, err
	}
	cfg := loader.StackConfig{FilterNetns: sc.Filtered(), Netns: sc.FixedInodes(), Pid: uint32(o.pid), Comms: o.comms, KernelStacks: o.kernel}
	for _, name := range o.syscalls {
		nr, _ := events.SyscallNumber(runtime.GOARCH, name)
		cfg.Syscalls = append(cfg.Syscalls, nr)
	}
	exact := len(cfg.Syscalls) > 0 || len(cfg.Comms) > 0
	if !exact {
		cfg.RatePerCPU = o.rate
	}
	s, err := loader.OpenStacks(cfg)
	if err != nil {
		return nil, err
	}
	c := &stackCollector{s: s, u: stacks.New(stacks.Options{}), arch: arch, exact: exact, rate: cfg.RatePerCPU,
		unresolved: map[string]uint64{}, done: make(chan struct{})}
	if o.kernel {
		if c.kern, err = stacks.LoadKallsyms("/proc/kallsyms"); err != nil {
			fmt.Fprintf(stderr, "sockscope: warning: kernel frames will not be named: %v\n", err)
		}
	}
	go c.run()
	return c, nil
}

// run reads until Close, or until stop and the ring is empty. A deadline set while a read waits
// does not wake it, so reads wait at most 100 ms and the stop flag is checked in between.
func (c *stackCollector) run() {
	defer close(c.done)
	var smp loader.StackSample
	for {
		c.s.SetDeadline(time.Now().Add(100 * time.Millisecond))
		err := c.s.ReadInto(&smp)
		if errors.Is(err, loader.ErrStacksClosed) {
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

func (c *stackCollector) note(why string) {
	c.mu.Lock()
	c.unresolved[why]++
	c.mu.Unlock()
}

func (c *stackCollector) add(smp *loader.StackSample) {
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

// stop detaches the sampler and waits until what it copied has been read.
func (c *stackCollector) stop() {
	c.s.Detach()
	c.stopping.Store(true)
	<-c.done
}

func (c *stackCollector) close() {
	c.s.Close()
	<-c.done
	c.u.Close()
}

// take returns the stacks counted since the last take, highest count first, with the sampler's
// counters over the same span.
func (c *stackCollector) take() ([]*stackRow, map[string]uint64, loader.StackStats, error) {
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
	rows := make([]*stackRow, len(sorted))
	for i, e := range sorted {
		netns, _ := strconv.ParseUint(e.Labels[0], 10, 32)
		rows[i] = &stackRow{netns: uint32(netns), comm: e.Labels[1], syscall: e.Labels[2], counted: e}
	}
	d := loader.StackStats{Matched: st.Matched - prev.Matched, Sampled: st.Sampled - prev.Sampled, Rate: st.Rate - prev.Rate, Lost: st.Lost - prev.Lost}
	return rows, unresolved, d, nil
}

// summary says how the counted stacks relate to the calls: all of them, or a sample.
func (c *stackCollector) summary(st loader.StackStats, unresolved map[string]uint64) string {
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

// print writes the stacks counted since the last print in the output format.
func (c *stackCollector) print(w io.Writer, stderr io.Writer, f *syscallsFlags) error {
	rows, unresolved, st, err := c.take()
	if err != nil {
		return err
	}
	var out strings.Builder
	summary := c.summary(st, unresolved)
	switch f.output {
	case "folded":
		// comm;outermost;...;innermost COUNT, summed over containers and syscalls: the input of
		// flamegraph.pl, inferno and speedscope. How they were sampled goes to stderr.
		fmt.Fprintln(stderr, "sockscope: "+summary)
		var folded stacks.Counts
		for _, r := range rows {
			folded.Add([]string{r.comm}, r.counted.Stack, r.counted.Count)
		}
		for _, e := range folded.Sorted() {
			fmt.Fprintf(&out, "%s %d\n", events.Printable(e.FoldedStack()), e.Count)
		}
	case "json":
		b, _ := json.Marshal(map[string]any{"type": "stacks_summary", "matched": st.Matched, "sampled": st.Sampled,
			"rate_limited": st.Rate, "lost": st.Lost, "exact": c.exact, "not_unwound": unresolved})
		out.Write(b)
		out.WriteByte('\n')
		for i, r := range rows {
			if i >= f.top {
				break
			}
			js := r.counted.JSON()
			v := map[string]any{"type": "stack", "comm": r.comm, "syscall": r.syscall, "count": js.Count, "stack": js.Stack}
			if js.Truncated {
				v["truncated"], v["truncated_reason"] = true, js.Reason
			}
			n, _ := c.names.Lookup(r.netns)
			if n.Name == "" {
				n.Name = strconv.FormatUint(uint64(r.netns), 10)
			}
			v["container"], v["container_id"], v["netns"], v["k8s_namespace"], v["k8s_pod"] = n.Name, n.ID, r.netns, n.Namespace, n.Pod
			b, _ := json.Marshal(v)
			out.Write(b)
			out.WriteByte('\n')
		}
	default:
		fmt.Fprintf(&out, "\n%s\n", summary)
		for i, r := range rows {
			if i >= f.top {
				break
			}
			n, ok := c.names.Lookup(r.netns)
			if !ok {
				n.Name = strconv.FormatUint(uint64(r.netns), 10)
			}
			fmt.Fprintf(&out, "\n%d  %s  %s  %s\n", r.counted.Count, events.Printable(n.Name), events.Printable(r.comm), r.syscall)
			for _, fr := range r.counted.Stack.Frames {
				where := ""
				if fr.Symbol != "" && fr.Module != "" {
					where = fmt.Sprintf("  (%s+0x%x)", fr.Module, fr.Offset)
				}
				fmt.Fprintf(&out, "    %s%s\n", events.Printable(fr.Name()), events.Printable(where))
			}
			if r.counted.Stack.Truncated {
				fmt.Fprintf(&out, "    %s %s\n", stacks.TruncatedFrame, events.Printable(r.counted.Stack.Reason))
			}
		}
	}
	if _, err := io.WriteString(w, out.String()); err != nil && !isEPIPE(err) {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// recorded returns the stacks counted since the last take, as a recording's stacks block holds
// them.
func (c *stackCollector) recorded(syscalls []string) (recording.Stacks, error) {
	rows, unresolved, st, err := c.take()
	if err != nil {
		return recording.Stacks{}, err
	}
	out := recording.Stacks{Exact: c.exact, Syscalls: syscalls, RatePerCPU: c.rate, Matched: st.Matched, Sampled: st.Sampled,
		Lost: st.Lost, NotUnwound: unresolved, List: make([]recording.StackCount, 0, len(rows))}
	for _, r := range rows {
		sc := recording.StackCount{Netns: r.netns, Comm: r.comm, Syscall: r.syscall, Truncated: r.counted.Stack.Truncated, Count: r.counted.Count,
			Frames: make([]string, len(r.counted.Stack.Frames))}
		for i := range r.counted.Stack.Frames {
			sc.Frames[i] = r.counted.Stack.Frames[i].Name()
		}
		out.List = append(out.List, sc)
	}
	if len(out.NotUnwound) == 0 {
		out.NotUnwound = nil
	}
	return out, nil
}
