// Package recorder is `sockscope record`: it attaches the kernel side of trace, syscalls and
// sockets (and, when asked, the stack sampler) to a scope of containers and namespaces, and writes
// what they see into one recording (package recording): TCP events with their owners, socket
// snapshots, syscall counts and stacks, container history and the facts that explain incidents
// (port ranges, somaxconn, open-file limits), every Interval until the end. Live `diagnose`
// records through it too.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/loader"
	"github.com/sockscope/sockscope/loader/sockets"
	"github.com/sockscope/sockscope/loader/syscalls"
	ktrace "github.com/sockscope/sockscope/loader/trace"
	"github.com/sockscope/sockscope/recording"
	"github.com/sockscope/sockscope/stacks/collector"
)

// Options are what one recording records, where it writes, and for how long.
type Options struct {
	// File is where the recording goes: a path, or "-" for Stdout. An existing file is an error
	// unless Force; MaxSize > 0 rotates it at that size (FILE becomes FILE.1).
	File    string
	Stdout  io.Writer
	Force   bool
	MaxSize int64

	// Scope is what is recorded: the runtimes that name namespaces, and the containers, pods and
	// namespaces selected (none: the host and every container). Comms keeps only the sockets,
	// syscalls and stacks of processes with these names.
	Scope containers.Spec
	Comms []string

	// Duration ends the recording after this long (0: when ctx ends). Interval is how often
	// socket snapshots, syscall counts and facts are taken (at least recording.MinInterval).
	Duration time.Duration
	Interval time.Duration

	// Syscalls also counts syscalls, their errors and file paths. ConnectSyscall also takes
	// connect() failures from the syscall's return (ktrace.Config.ConnectSyscall).
	Syscalls       bool
	ConnectSyscall bool
	// Stacks, when not nil, also records user stacks: of every call of these syscalls (names,
	// checked by the caller), or, when empty, a sample of all of them: StackRate per CPU per second.
	Stacks    []string
	StackRate int

	// Version is the sockscope that writes the file, for its meta block.
	Version string
	// Stderr takes warnings, one line each.
	Stderr io.Writer
	// Attached, when not nil, is called once the programs are attached and the file is started,
	// just before the first event is read, with what is recorded in words: the caller catches its
	// stop signals there and says that recording began.
	Attached func(scope string)
}

// Summary is what one recording wrote.
type Summary struct {
	File      string
	Events    uint64 // TCP events
	Snapshots uint64 // socket snapshots, one per namespace per interval
	Lost      uint64 // events the kernel side could not hand over
}

// recorder is one recording: the kernel side of trace, syscalls and sockets, and the sink they
// all write to.
type recorder struct {
	o      Options
	sink   *recording.Sink
	clock  events.Clock
	stderr io.Writer
	scope  *containers.Scope
	hist   *history

	watcher *containers.Watcher // names the namespaces of events

	tracer  *ktrace.Tracer
	counter *syscalls.Counter
	stacks  *collector.Collector
	socks   *sockets.Iterators

	nEvents uint64
	nSnaps  uint64
}

// Run records until Duration has passed or ctx ends (a stop from outside: the file's end block
// says "signal"), then ends the file with a last snapshot. Everything that can fail on bad input
// fails before the file is created. A failure after that ends the file with an end block that says
// why, so that what came before it reads. The caller has checked the privileges (loader).
func Run(ctx context.Context, o Options) (Summary, error) {
	// ctx only says when to stop: the namespaces are named until the last event is written.
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	r := &recorder{o: o, stderr: o.Stderr}
	sc, warnings, err := containers.NewScope(work, o.Scope)
	if err != nil {
		return Summary{}, err
	}
	for _, w := range warnings {
		fmt.Fprintf(o.Stderr, "sockscope: warning: %s\n", w)
	}
	defer sc.Close()
	r.scope, r.hist = sc, newHistory(sc.Selected)
	for _, t := range sc.Fixed {
		if t.Path == "" {
			return Summary{}, fmt.Errorf("--netns %d: no process lives in that network namespace, so its sockets cannot be listed; give its path instead (e.g. /run/netns/NAME)", t.Inode)
		}
	}
	fixed := sc.FixedInodes()

	if r.tracer, err = ktrace.Open(ktrace.Config{FilterNetns: sc.Filtered(), Netns: fixed, ConnectSyscall: o.ConnectSyscall, Comms: o.Comms}); err != nil {
		return Summary{}, err
	}
	defer r.tracer.Close()
	if o.Syscalls {
		cfg := syscalls.Config{FilterNetns: sc.Filtered(), Netns: fixed, Comms: o.Comms, Paths: true, PathSyscalls: syscalls.PathSyscallsFor(runtime.GOARCH)}
		if r.counter, err = syscalls.Open(cfg); err != nil {
			return Summary{}, err
		}
		defer r.counter.Close()
	}
	if r.socks, err = sockets.Open(); err != nil {
		return Summary{}, err
	}
	defer r.socks.Close()
	if o.Stacks != nil {
		co := collector.Options{Syscalls: o.Stacks, Comms: o.Comms, Rate: uint32(min(o.StackRate, 1<<20))}
		if r.stacks, err = collector.Open(co, sc, o.Stderr); err != nil {
			return Summary{}, err
		}
		defer r.stacks.Close()
	}
	loader.ReleaseBTF() // everything is loaded

	if r.sink, err = recording.Create(o.File, o.MaxSize, o.Force, o.Stdout); err != nil {
		return Summary{}, err
	}
	r.sink.SetBase(recording.BlockContainers, r.hist.fullList)
	r.clock = events.NewClock()
	start := time.Now()
	what := "the host and every container"
	if sc.Filtered() {
		what = sc.Describe()
	}
	if len(o.Comms) > 0 {
		what += ", processes named " + strings.Join(o.Comms, ", ")
	}
	if err := r.sink.WriteJSON(recording.BlockMeta, start, r.meta(start, what)); err != nil {
		return Summary{}, fmt.Errorf("write %s: %w", o.File, err)
	}

	setNetns := func(ns []uint32) error {
		var errs []error
		errs = append(errs, r.tracer.SetNetns(ns))
		if r.counter != nil {
			errs = append(errs, r.counter.SetNetns(ns))
		}
		if r.stacks != nil {
			errs = append(errs, r.stacks.SetNetns(ns))
		}
		return errors.Join(errs...)
	}
	w, err := containers.Follow(work, sc, setNetns, o.Stderr, func(w *containers.Watcher) {
		w.OnUpdate = r.update
		w.OnDie = r.died
	})
	if err != nil {
		return Summary{}, err
	}
	if len(sc.Runtimes) == 0 {
		r.writeContainers(time.Now()) // an empty list: no container names in this recording
	}
	r.watcher = w
	if o.Attached != nil {
		o.Attached(what)
	}
	if err := r.run(ctx, work); err != nil {
		return Summary{}, err
	}
	lost, _ := r.tracer.Lost()
	return Summary{File: o.File, Events: r.nEvents, Snapshots: r.nSnaps, Lost: lost.Total()}, nil
}

// meta is the file's first block: where, when and what was recorded.
func (r *recorder) meta(start time.Time, what string) recording.Meta {
	sc := r.scope
	hostname, _ := os.Hostname()
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	meta := recording.Meta{
		Sockscope: r.o.Version, Hostname: hostname, Kernel: unix.ByteSliceToString(uts.Release[:]), Arch: runtime.GOARCH,
		Start: start.UTC(), ClockOffset: r.clock.Offset(), Interval: r.o.Interval, HostNetns: sc.Host.Inode,
		Scope: what, Filtered: sc.Filtered(), Paths: r.o.Syscalls, NetnsNames: map[uint32]string{}, Comms: r.o.Comms,
	}
	for _, t := range sc.Fixed {
		if t.Name.Name != "" && t.Inode != sc.Host.Inode {
			meta.NetnsNames[t.Inode] = t.Name.Name
		}
	}
	return meta
}

// update follows the running containers (the watcher's OnUpdate).
func (r *recorder) update(running []containers.Container) {
	now := time.Now()
	r.hist.update(running, now)
	r.writeContainers(now)
}

// died records a container's exit (the watcher's OnDie).
func (r *recorder) died(e containers.Exit) {
	r.hist.died(e, time.Now())
	r.writeContainers(time.Now())
}

// writeContainers writes what changed in the container history since the last containers block.
func (r *recorder) writeContainers(now time.Time) {
	t, list, ok := r.hist.pending()
	if !ok {
		return
	}
	if err := r.sink.WriteJSON(t, now, list); err != nil {
		fmt.Fprintf(r.stderr, "sockscope: write %s: %v\n", r.o.File, err)
	}
}

// run reads events until the end, taking snapshots every interval; ctx ending is the stop from
// outside, work the context the namespaces are named in.
func (r *recorder) run(ctx, work context.Context) error {
	stop := make(chan string, 1)
	go func() {
		var end <-chan time.Time
		if r.o.Duration > 0 {
			end = time.After(r.o.Duration)
		}
		select {
		case <-ctx.Done():
			stop <- "signal"
		case <-end:
			stop <- "duration"
		}
	}()

	// The event reader's result: it ends once the programs are detached and the ring drained
	// (evStop), or early on a write error.
	evErr := make(chan error, 1)
	evStop := make(chan struct{})
	go func() { evErr <- r.readEvents(work, evStop) }()

	// A failure ends the file with an end block that says why: what came before it reads.
	fail := func(err error) error {
		r.tracer.Detach()
		r.sink.Close(time.Now(), "error: "+err.Error())
		return err
	}
	if err := r.snapshot(); err != nil {
		return fail(err)
	}
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	reason := ""
	for reason == "" {
		select {
		case reason = <-stop:
		case err := <-evErr:
			// The event reader only stops early on a write error.
			return fail(err)
		case <-tick.C:
			if err := r.snapshot(); err != nil {
				return fail(err)
			}
		}
	}
	// The last events first, then the final snapshot, so the file ends with the latest state.
	r.tracer.Detach()
	close(evStop)
	if r.stacks != nil {
		r.stacks.Stop()
	}
	if err := <-evErr; err != nil {
		return fail(err)
	}
	if err := r.snapshot(); err != nil {
		return fail(err)
	}
	if err := r.sink.Close(time.Now(), reason); err != nil {
		return fmt.Errorf("write %s: %w", r.o.File, err)
	}
	return nil
}

// readEvents drains the ring buffer every poll interval and writes its events, with their owners
// and times (trace.Tracker), in events blocks: one block every tenth poll that found events, or
// sooner when a block reaches eventBlock bytes. Once stop is closed (the programs detached), it
// drains what is left and returns.
func (r *recorder) readEvents(ctx context.Context, stop <-chan struct{}) error {
	const eventBlock = 1 << 20
	buf := make([]byte, 0, eventBlock+trace.RecordSize)
	var werr error
	flush := func() {
		if len(buf) == 0 || werr != nil {
			return
		}
		r.nEvents += uint64(len(buf) / trace.RecordSize)
		if err := r.sink.Write(recording.BlockEvents, time.Now(), buf); err != nil {
			werr = fmt.Errorf("write %s: %w", r.o.File, err)
		}
		buf = buf[:0]
	}
	tr := ktrace.NewTracking(r.tracer)
	take := func(ev *trace.Event) {
		// A namespace no runtime has named yet: a pod or container that just started. Asking now
		// puts it in the container history before its first snapshot (rate-limited).
		r.watcher.Resolve(ctx, ev.Netns)
		buf = trace.AppendEvent(buf, ev)
		if len(buf) >= eventBlock {
			flush()
		}
	}
	polls := 0
	return tr.Follow(stop, take, func(final bool) (bool, error) {
		if polls++; final || polls%10 == 0 {
			flush()
		}
		return werr != nil, werr
	})
}
