package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sockscope/sockscope/console"
	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/syscalls"
	ksyscalls "github.com/sockscope/sockscope/loader/syscalls"
	"github.com/sockscope/sockscope/recording"
	"github.com/sockscope/sockscope/stacks/collector"
)

type syscallsFlags struct {
	containers   []string
	pid          int
	netns        []string
	by           []string
	syscalls     []string
	errors       bool
	latency      bool
	paths        bool
	interval     time.Duration
	duration     time.Duration
	top          int
	output       string
	runtimes     runtimeFlags
	read         string
	budget       recording.Budget
	comms        []string
	stacks       bool
	kernelStacks bool
	stackRate    uint32
}

func parseSyscallsFlags(args []string, stdout io.Writer) (*syscallsFlags, bool, error) {
	f := &syscallsFlags{}
	fs := newFlagSet("sockscope syscalls")
	fs.StringArrayVarP(&f.containers, "container", "c", nil, "count the syscalls of this container or pod: a name, an ID prefix, NAMESPACE/POD, or a pod name; repeatable")
	fs.IntVar(&f.pid, "pid", 0, "only this process (host PID)")
	fs.StringArrayVar(&f.netns, "netns", nil, "only tasks in this network namespace: an inode, or a path such as /proc/PID/ns/net or /run/netns/NAME; repeatable")
	fs.StringSliceVar(&f.by, "by", syscalls.ByFields, "aggregate by these fields: container, comm, pid, syscall")
	fs.StringSliceVar(&f.syscalls, "syscall", nil, "only these syscalls, by name (e.g. openat,fsync)")
	commFlag(fs, &f.comms, "only the calls")
	fs.BoolVar(&f.stacks, "stacks", false, "also collect the user stacks of the calls, per container, command and syscall (unwound from the programs' CFI, named from their symbols and perf maps)")
	fs.BoolVar(&f.kernelStacks, "kernel-stacks", false, "with --stacks: also the kernel stack at the syscall's entry")
	stackRate := fs.Int("stack-rate", collector.DefaultRate, "with --stacks and no --syscall or --comm filter: stacks copied per CPU per second (a sample; the output gives the ratio)")
	fs.BoolVar(&f.errors, "errors", false, "also list failures by syscall and errno")
	fs.BoolVar(&f.latency, "latency", false, "also measure time spent in each syscall (average and maximum)")
	fs.BoolVar(&f.paths, "paths", false, "also count the file paths given to open, unlink, rename and friends")
	fs.DurationVar(&f.interval, "interval", 0, "print a table every interval (a live top); 0 = once at the end")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long; 0 = until Ctrl-C")
	fs.IntVar(&f.top, "top", 20, "rows per table")
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table, json (one object per line), or with --stacks folded (comm;outermost;...;innermost COUNT, for flame graphs)")
	f.runtimes.add(fs)
	fs.StringVarP(&f.read, "read", "r", "", "count from a recording (sockscope record) instead of live")
	maxInflate := maxInflateFlag(fs)
	if helped, err := parseFlags(fs, args, stdout, "sockscope syscalls [flags]\n\nSyscall hotspots per container, counted in the kernel: DTrace's @[execname, pid, probefunc] = count().", "containers are given with --container NAME"); err != nil || helped {
		return nil, helped, err
	}
	for _, b := range f.by {
		if !slices.Contains(syscalls.ByFields, b) {
			return nil, false, usageError{fmt.Sprintf("--by %q: use any of %s", b, strings.Join(syscalls.ByFields, ","))}
		}
	}
	for _, name := range f.syscalls {
		if _, ok := events.SyscallNumber(runtime.GOARCH, name); !ok {
			return nil, false, usageError{fmt.Sprintf("--syscall %q is not a syscall on %s; closest: %s", name, runtime.GOARCH,
				strings.Join(containers.Closest(name, events.SyscallNames(runtime.GOARCH), 3), ", "))}
		}
	}
	if err := oneOf("output", f.output, "table", "json", "folded"); err != nil {
		return nil, false, err
	}
	if f.output == "folded" && !f.stacks {
		return nil, false, usageError{"--output folded prints stacks: add --stacks"}
	}
	if f.kernelStacks && !f.stacks {
		return nil, false, usageError{"--kernel-stacks adds kernel frames to --stacks: add --stacks"}
	}
	if f.stacks && f.read != "" {
		return nil, false, usageError{"--stacks are collected live; the stacks a recording holds (record --stacks) are in sockscope report FILE"}
	}
	if *stackRate < 1 {
		return nil, false, usageError{fmt.Sprintf("--stack-rate must be at least 1, not %d", *stackRate)}
	}
	f.stackRate = uint32(min(*stackRate, 1<<20))
	if err := checkComms(f.comms); err != nil {
		return nil, false, err
	}
	if f.pid < 0 {
		return nil, false, usageError{fmt.Sprintf("--pid must be a process ID, not %d", f.pid)}
	}
	if f.top < 1 {
		return nil, false, usageError{fmt.Sprintf("--top must be at least 1, not %d", f.top)}
	}
	if f.interval < 0 || f.duration < 0 {
		return nil, false, usageError{"--interval and --duration must not be negative"}
	}
	if f.read != "" && f.duration > 0 {
		return nil, false, usageError{"--duration applies to live counting; a replay (-r) covers the whole recording"}
	}
	budget, err := parseMaxInflate(*maxInflate)
	if err != nil {
		return nil, false, err
	}
	f.budget = budget
	return f, false, nil
}

func runSyscalls(args []string, stdout, stderr io.Writer) error {
	f, helped, err := parseSyscallsFlags(args, stdout)
	if err != nil || helped {
		return err
	}
	o := console.SyscallsOptions{Scope: f.runtimes.spec(f.containers, f.netns), Output: f.output, Until: f.duration, Stdout: stdout, Stderr: stderr,
		Config: ksyscalls.Config{Pid: uint32(f.pid), Comms: f.comms, Latency: f.latency, Paths: f.paths, PathSyscalls: ksyscalls.PathSyscallsFor(runtime.GOARCH)},
		Table: syscalls.Options{By: f.by, Syscalls: f.syscalls, Comms: f.comms, Errors: f.errors, Latency: f.latency,
			Paths: f.paths, Top: f.top, Interval: f.interval, JSON: f.output == "json"}}
	if f.read != "" {
		return replay(f.read, f.budget, f.containers, f.netns, stderr, func(rec *recording.File, netns map[uint32]bool) error {
			return console.ReplaySyscalls(rec, f.read, netns, o)
		})
	}
	if err := prepare(); err != nil {
		return err
	}
	if err := checkPid(f.pid); err != nil {
		return err
	}
	if f.stacks {
		o.Stacks = &collector.Options{Pid: f.pid, Comms: f.comms, Syscalls: f.syscalls, Kernel: f.kernelStacks, Rate: f.stackRate}
	}
	ctx, catch, release := catchSignals()
	defer release()
	o.Attached = func(string) {
		catch()
		fmt.Fprintf(stderr, "sockscope: attached, counting syscalls (Ctrl-C to print and stop)\n")
	}
	return console.Syscalls(ctx, o)
}
