package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/recorder"
	"github.com/sockscope/sockscope/recording"
	"github.com/sockscope/sockscope/stacks/collector"
)

type recordFlags struct {
	file        string
	containers  []string
	netns       []string
	comms       []string
	duration    time.Duration
	interval    time.Duration
	maxSize     int64
	force       bool
	syscalls    bool
	connectCall bool
	runtimes    runtimeFlags
	stacks      []string // --stacks: syscall names, or ["*"] for every syscall (sampled)
	stackRate   int
}

func parseRecordFlags(args []string, stdout io.Writer) (*recordFlags, bool, error) {
	f := &recordFlags{}
	fs := newFlagSet("sockscope record")
	fs.StringVarP(&f.file, "write", "w", "", "write the recording to this file (- for standard output)")
	fs.StringArrayVarP(&f.containers, "container", "c", nil, "record this container or pod (a name, an ID prefix, NAMESPACE/POD, or a pod name); repeatable; default: the host and every container")
	fs.StringArrayVar(&f.netns, "netns", nil, "record this network namespace: an inode, or a path such as /run/netns/NAME or /proc/PID/ns/net; repeatable")
	fs.DurationVar(&f.duration, "duration", 0, "stop after this long (e.g. 10m); 0 = until Ctrl-C")
	fs.DurationVar(&f.interval, "interval", 5*time.Second, "how often socket snapshots, syscall counts and facts are taken")
	size := fs.String("max-size", "", "rotate the file at this size (e.g. 100M, 2G): FILE becomes FILE.1 and a new FILE starts")
	fs.BoolVar(&f.force, "force", false, "overwrite FILE if it exists")
	fs.BoolVar(&f.syscalls, "syscalls", true, "also count syscalls, their errors and file paths")
	fs.BoolVar(&f.connectCall, "connect-syscall", false, "also take connect() failures from the syscall's return, as trace --connect-syscall does: failures before SYN_SENT (ENETUNREACH) and the exact errno of those inside connect()")
	fs.StringSliceVar(&f.stacks, "stacks", nil, "also record user stacks: --stacks=openat,fsync for every call of these syscalls, or --stacks alone for a sample of all of them (see --stack-rate)")
	fs.Lookup("stacks").NoOptDefVal = "*"
	fs.IntVar(&f.stackRate, "stack-rate", collector.DefaultRate, "with --stacks alone: stacks copied per CPU per second")
	commFlag(fs, &f.comms, "record only the sockets, syscalls and stacks")
	f.runtimes.add(fs)
	if helped, err := parseFlags(fs, args, stdout, "sockscope record -w FILE [flags]\n\nRecord TCP events, socket snapshots, syscall counts, container metadata and the settings that\nexplain incidents into one file, for trace/syscalls/sockets -r, report and diagnose.", "the file is given with -w FILE"); err != nil || helped {
		return nil, helped, err
	}
	if f.file == "" {
		return nil, false, usageError{"-w FILE is required (- writes to standard output)"}
	}
	if f.duration < 0 {
		return nil, false, usageError{fmt.Sprintf("--duration must not be negative, not %s", f.duration)}
	}
	if err := checkComms(f.comms); err != nil {
		return nil, false, err
	}
	if fs.Changed("stacks") {
		if len(f.stacks) == 1 && f.stacks[0] == "*" {
			f.stacks = []string{}
		}
		for _, name := range f.stacks {
			if _, ok := events.SyscallNumber(runtime.GOARCH, name); !ok {
				return nil, false, usageError{fmt.Sprintf("--stacks %q is not a syscall on %s; closest: %s", name, runtime.GOARCH,
					strings.Join(containers.Closest(name, events.SyscallNames(runtime.GOARCH), 3), ", "))}
			}
		}
		if _, err := collector.Arch(); err != nil {
			return nil, false, err
		}
	} else {
		f.stacks = nil
	}
	if f.stackRate < 1 {
		return nil, false, usageError{fmt.Sprintf("--stack-rate must be at least 1, not %d", f.stackRate)}
	}
	if f.interval < recording.MinInterval {
		return nil, false, usageError{fmt.Sprintf("--interval must be at least %s, not %s", recording.MinInterval, f.interval)}
	}
	if fs.Changed("max-size") { // an empty value is no size, not "no limit"
		n, err := recording.ParseSize(*size)
		if err != nil {
			return nil, false, usageError{fmt.Sprintf("--max-size %q: %v", *size, err)}
		}
		if n < 64<<10 {
			return nil, false, usageError{fmt.Sprintf("--max-size %s is too small: use at least 64K", *size)}
		}
		if f.file == "-" {
			return nil, false, usageError{"--max-size needs a file to rotate, not -w - (standard output)"}
		}
		f.maxSize = n
	}
	return f, false, nil
}

func runRecord(args []string, stdout, stderr io.Writer) error {
	f, helped, err := parseRecordFlags(args, stdout)
	if err != nil || helped {
		return err
	}
	return record(f, stdout, stderr)
}

// record runs one recording to its end (--duration or a signal) and says what it wrote.
func record(f *recordFlags, stdout, stderr io.Writer) error {
	return runRecorder(recorder.Options{
		File: f.file, Stdout: stdout, Force: f.force, MaxSize: f.maxSize,
		Scope:    f.runtimes.spec(f.containers, f.netns),
		Comms:    f.comms,
		Duration: f.duration, Interval: f.interval,
		Syscalls: f.syscalls, ConnectSyscall: f.connectCall, Stacks: f.stacks, StackRate: f.stackRate,
	}, stderr)
}

// runRecorder is recorder.Run with what the command line adds: the kernel and privilege checks,
// signals that end the recording, and the lines that say it started and what it wrote.
func runRecorder(o recorder.Options, stderr io.Writer) error {
	if err := prepare(); err != nil {
		return err
	}
	// SIGHUP too: an SSH session that drops must leave a complete file, not one cut short.
	ctx, catch, release := catchSignals(syscall.SIGHUP)
	defer release()
	o.Version, o.Stderr = version, stderr
	o.Attached = func(what string) {
		catch()
		fmt.Fprintf(stderr, "sockscope: attached, recording %s to %s (Ctrl-C to stop)\n", events.Printable(what), events.Printable(o.File))
	}
	sum, err := recorder.Run(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "sockscope: recorded %d events and %d socket snapshots (%d lost) to %s\n", sum.Events, sum.Snapshots, sum.Lost, sum.File)
	return nil
}
