package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sockscope/sockscope/console"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/trace"
	ktrace "github.com/sockscope/sockscope/loader/trace"
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
func (f *traceFlags) filter() trace.Filter {
	filter := trace.Filter{Pid: uint32(f.pid), Comms: f.comms, ConnectErrorsOnly: f.connectErrors}
	for _, p := range f.ports {
		filter.Ports = append(filter.Ports, uint16(p))
	}
	switch f.family {
	case 4:
		filter.Family = ktrace.AFInet
	case 6:
		filter.Family = ktrace.AFInet6
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
	filter := f.filter()
	o := console.TraceOptions{Scope: f.runtimes.spec(f.containers, f.netns), Filter: filter, JSON: f.output == "json", Count: f.count,
		Until: f.duration, Stdout: stdout, Stderr: stderr,
		Config: ktrace.Config{Ports: filter.Ports, Family: filter.Family, ConnectSyscall: f.connectCall, Pid: filter.Pid, Comms: f.comms}}
	if f.read != "" {
		return replay(f.read, f.budget, f.containers, f.netns, stderr, func(rec *recording.File, netns map[uint32]bool) error {
			return console.ReplayTrace(rec, f.read, netns, o)
		})
	}
	if err := prepare(); err != nil {
		return err
	}
	if err := checkPid(f.pid); err != nil {
		return err
	}
	ctx, catch, release := catchSignals()
	defer release()
	o.Attached = func(what string) {
		catch()
		fmt.Fprintf(stderr, "sockscope: attached, tracing %s (Ctrl-C to stop)\n", events.Printable(what))
	}
	return console.Trace(ctx, o)
}
