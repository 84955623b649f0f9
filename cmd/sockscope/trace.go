package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader/trace"
	"github.com/sockscope/sockscope/recording"
)

type traceFlags struct {
	containers    []string
	pid           int
	comms         []string
	netns         []string
	ports         []int
	family        int
	state         string
	connectErrors bool
	connectCall   bool
	output        string
	duration      time.Duration
	count         int
	runtimes      runtimeFlags
	read          string
	budget        recording.Budget
}

func parseTraceFlags(args []string, stdout io.Writer) (*traceFlags, bool, error) {
	f := &traceFlags{}
	fs := newFlagSet("sockscope trace")
	fs.StringArrayVarP(&f.containers, "container", "c", nil, "trace this container or pod: a name, an ID prefix, NAMESPACE/POD, or a pod name; repeatable")
	fs.IntVar(&f.pid, "pid", 0, "only sockets owned by this process (host PID); filtered in the kernel")
	commFlag(fs, &f.comms, "only sockets owned by processes")
	fs.StringArrayVar(&f.netns, "netns", nil, "only this network namespace: an inode, or a path such as /proc/PID/ns/net or /run/netns/NAME; repeatable")
	fs.IntSliceVarP(&f.ports, "port", "p", nil, "only sockets with this local or remote port; repeatable")
	fs.IntVar(&f.family, "family", 0, "only IPv4 (4) or IPv6 (6)")
	fs.StringVar(&f.state, "state", "", "only transitions from or to this TCP state (e.g. ESTABLISHED, TIME_WAIT)")
	fs.BoolVar(&f.connectErrors, "connect-errors", false, "only failed connects")
	fs.BoolVar(&f.connectCall, "connect-syscall", false, "also take connect() failures from the syscall's return: failures before SYN_SENT (ENETUNREACH) and the exact errno of those inside connect(); puts every syscall of the machine on the slow path while tracing")
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or json (one object per line)")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long (e.g. 30s); 0 = until Ctrl-C")
	fs.IntVar(&f.count, "count", 0, "stop after this many output lines (JSON lines or table rows); 0 = no limit")
	f.runtimes.add(fs)
	fs.StringVarP(&f.read, "read", "r", "", "replay a recording made by sockscope record instead of tracing live")
	maxInflate := maxInflateFlag(fs)
	if helped, err := parseFlags(fs, args, stdout, "sockscope trace [flags]\n\nLive TCP state transitions and connect outcomes (errno, latency), named by container.", "containers are given with --container NAME"); err != nil || helped {
		return nil, helped, err
	}
	if err := oneOf("output", f.output, "table", "json"); err != nil {
		return nil, false, err
	}
	if f.family != 0 && f.family != 4 && f.family != 6 {
		return nil, false, usageError{fmt.Sprintf("--family must be 4 or 6, not %d", f.family)}
	}
	for _, p := range f.ports {
		if p < 1 || p > 65535 {
			return nil, false, usageError{fmt.Sprintf("--port must be between 1 and 65535, not %d", p)}
		}
	}
	if f.state != "" {
		if _, ok := events.ParseState(f.state); !ok {
			return nil, false, usageError{fmt.Sprintf("--state %q is not a TCP state; use one of %s", f.state, strings.Join(events.StateNames(), ", "))}
		}
	}
	if f.pid < 0 {
		return nil, false, usageError{fmt.Sprintf("--pid must be a process ID, not %d", f.pid)}
	}
	if err := checkComms(f.comms); err != nil {
		return nil, false, err
	}
	if f.count < 0 {
		return nil, false, usageError{fmt.Sprintf("--count must not be negative, not %d", f.count)}
	}
	if f.duration < 0 {
		return nil, false, usageError{fmt.Sprintf("--duration must not be negative, not %s", f.duration)}
	}
	if f.read != "" && f.duration > 0 {
		return nil, false, usageError{"--duration applies to live tracing; a replay (-r) shows the whole recording"}
	}
	if f.read != "" && f.connectCall {
		return nil, false, usageError{"--connect-syscall applies to live tracing; a replay (-r) shows what was recorded"}
	}
	budget, err := parseMaxInflate(*maxInflate)
	if err != nil {
		return nil, false, err
	}
	f.budget = budget
	return f, false, nil
}

// filter is the selection of the flags, as user space applies it: the kernel applies the
// namespace, port and family filters first, and the tracker needs every transition of a socket
// to know its owner and times, so the state, owner and connect-error filters come after it.
func (f *traceFlags) filter() events.Filter {
	filter := events.Filter{Pid: uint32(f.pid), Comms: f.comms, ConnectErrorsOnly: f.connectErrors}
	for _, p := range f.ports {
		filter.Ports = append(filter.Ports, uint16(p))
	}
	switch f.family {
	case 4:
		filter.Family = trace.AFInet
	case 6:
		filter.Family = trace.AFInet6
	}
	if f.state != "" {
		filter.State, _ = events.ParseState(f.state)
	}
	return filter
}

func runTrace(args []string, stdout, stderr io.Writer) error {
	f, helped, err := parseTraceFlags(args, stdout)
	if err != nil || helped {
		return err
	}
	if f.read != "" {
		return replayTrace(f, stdout, stderr)
	}
	if err := prepare(); err != nil {
		return err
	}
	filter := f.filter()
	cfg := trace.Config{Ports: filter.Ports, Family: filter.Family, ConnectSyscall: f.connectCall, Pid: filter.Pid, Comms: f.comms}
	if f.pid != 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", f.pid)); err != nil {
			return fmt.Errorf("--pid %d: no such process", f.pid)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sc, err := newScope(ctx, &f.runtimes, f.containers, f.netns, stderr)
	if err != nil {
		return err
	}
	defer sc.Close()
	cfg.FilterNetns = sc.Filtered()
	cfg.Netns = sc.FixedInodes()

	tracer, err := trace.Open(cfg)
	if err != nil {
		return err
	}
	defer tracer.Close()
	w, err := containers.Follow(ctx, sc, tracer.SetNetns, stderr)
	if err != nil {
		return err
	}
	// Signals are caught before "attached" is said: a script may stop the trace the moment it
	// reads that line, and must still get the flush and the summary.
	signal.Ignore(syscall.SIGPIPE) // a closed pipe becomes EPIPE, which ends the trace quietly
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	fmt.Fprintf(stderr, "sockscope: attached, tracing %s (Ctrl-C to stop)\n", events.Printable(sc.Describe()))
	return traceLoop(ctx, tracer, w, f, sigs, stdout, stderr)
}

// resolver names a namespace, asking the runtimes again when it is new (see Watcher.Resolve).
type resolver interface {
	Resolve(ctx context.Context, inode uint32) (containers.Name, bool)
}

func traceLoop(ctx context.Context, tracer *trace.Tracer, names resolver, f *traceFlags, sigs <-chan os.Signal, stdout, stderr io.Writer) error {
	stopc := make(chan struct{})
	var stopping atomic.Bool
	stop := func() {
		if stopping.CompareAndSwap(false, true) {
			close(stopc)
		}
	}
	go func() {
		select {
		case <-sigs:
			stop()
		case <-stopc:
		}
	}()
	if f.duration > 0 {
		t := time.AfterFunc(f.duration, stop)
		defer t.Stop()
	}

	// Lost events are reported as they happen, not only at the end.
	var lostReported atomic.Uint64
	reportLost := func(l trace.Lost) {
		if prev := lostReported.Swap(l.Total()); l.Total() > prev {
			fmt.Fprintf(stderr, "sockscope: lost %d events (%d in all: %d ring buffer full, %d skipped by the kernel while the program ran on that CPU, %d sockets the owner filter could not follow)\n",
				l.Total()-prev, l.Total(), l.RingFull, l.Nested, l.Owned)
		}
	}
	out := events.NewPrinter(stdout, events.NewClock(), f.output == "json", f.count)
	filter := f.filter()
	tr := trace.NewTracking(tracer)
	var (
		full, pipeClosed bool
		werr             error
	)
	take := func(ev *events.Event) {
		if full || pipeClosed || werr != nil || !filter.Keep(ev) {
			return
		}
		name, ok := names.Resolve(ctx, ev.Netns)
		full = out.Add(ev, name, ok)
		if out.Full() {
			if err := out.Flush(); err != nil {
				if pipeClosed = isEPIPE(err); !pipeClosed {
					werr = fmt.Errorf("write output: %w", err)
				}
			}
		}
	}
	lastLost := time.Now()
	err := tr.Follow(stopc, take, func(final bool) (bool, error) {
		if werr != nil {
			return true, werr
		}
		if err := out.Flush(); err != nil {
			if pipeClosed = isEPIPE(err); !pipeClosed {
				return true, fmt.Errorf("write output: %w", err)
			}
		}
		if !final && time.Since(lastLost) >= time.Second {
			lastLost = time.Now()
			if l, err := tracer.Lost(); err == nil {
				reportLost(l)
			}
		}
		return full || pipeClosed, nil
	})
	if err != nil || pipeClosed {
		return err
	}
	lost, err := tracer.Lost()
	if err != nil {
		return err
	}
	reportLost(lost)
	out.Summary(stderr, lost.Total())
	return nil
}

func isEPIPE(err error) bool { return errors.Is(err, syscall.EPIPE) }
