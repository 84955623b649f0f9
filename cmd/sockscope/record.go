package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader"
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
		n, err := parseSize(*size)
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

// parseSize reads a byte count with an optional K, M or G suffix (powers of 1024).
func parseSize(s string) (int64, error) {
	bad := errors.New("want a positive number of bytes, optionally with K, M or G (e.g. 500M)")
	if s == "" {
		return 0, bad
	}
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, bad
	}
	return n * mult, nil
}

// recorder is one `sockscope record` run: the kernel side of trace, syscalls and sockets, and
// the sink they all write to.
type recorder struct {
	f      *recordFlags
	sink   *recording.Sink
	clock  events.Clock
	stderr io.Writer
	scope  *containers.Scope

	resolver resolver

	tracer  *loader.Tracer
	counter *loader.Syscalls
	stacks  *collector.Collector
	socks   *loader.Sockets

	mu      sync.Mutex
	history map[string]*recording.Container // by full ID: the running containers and the last stopped
	changed map[string]bool                 // IDs whose state the file does not have yet
	based   bool                            // the file has a full list
	running []containers.Container
	nEvents uint64
	nSnaps  uint64
}

// keepStopped is how many stopped containers the recorder remembers: for the exit code that comes
// after the stop, and for the full list that starts a rotated file (their namespaces' late events
// keep their names). The file keeps every container it saw.
const keepStopped = 256

func runRecord(args []string, stdout, stderr io.Writer) error {
	f, helped, err := parseRecordFlags(args, stdout)
	if err != nil || helped {
		return err
	}
	return record(f, stdout, stderr)
}

// record runs one recording to its end (--duration or a signal).
func record(f *recordFlags, stdout, stderr io.Writer) error {
	if err := prepare(); err != nil {
		return err
	}
	r := &recorder{f: f, stderr: stderr, history: map[string]*recording.Container{}, changed: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sc, err := newScope(ctx, &f.runtimes, f.containers, f.netns, stderr)
	if err != nil {
		return err
	}
	defer sc.Close()
	r.scope = sc
	for _, t := range sc.Fixed {
		if t.Path == "" {
			return fmt.Errorf("--netns %d: no process lives in that network namespace, so its sockets cannot be listed; give its path instead (e.g. /run/netns/NAME)", t.Inode)
		}
	}
	fixed := sc.FixedInodes()

	// Everything that can fail on bad input is checked before the file is created.
	if r.tracer, err = loader.OpenTrace(loader.TraceConfig{FilterNetns: sc.Filtered(), Netns: fixed, ConnectSyscall: f.connectCall, Comms: f.comms}); err != nil {
		return err
	}
	defer r.tracer.Close()
	if f.syscalls {
		cfg := loader.SyscallConfig{FilterNetns: sc.Filtered(), Netns: fixed, Comms: f.comms, Paths: true, PathSyscalls: loader.PathSyscallsFor(runtime.GOARCH)}
		if r.counter, err = loader.OpenSyscalls(cfg); err != nil {
			return err
		}
		defer r.counter.Close()
	}
	if r.socks, err = loader.OpenSockets(); err != nil {
		return err
	}
	defer r.socks.Close()
	if f.stacks != nil {
		o := collector.Options{Syscalls: f.stacks, Comms: f.comms, Rate: uint32(min(f.stackRate, 1<<20))}
		if r.stacks, err = collector.Open(o, sc, stderr); err != nil {
			return err
		}
		defer r.stacks.Close()
	}

	if r.sink, err = recording.Create(f.file, f.maxSize, f.force, stdout); err != nil {
		return err
	}
	r.sink.SetBase(recording.BlockContainers, r.fullList)
	r.clock = events.NewClock()
	start := time.Now()
	hostname, _ := os.Hostname()
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	what := "the host and every container"
	if sc.Filtered() {
		what = sc.Describe()
	}
	if len(f.comms) > 0 {
		what += ", processes named " + strings.Join(f.comms, ", ")
	}
	meta := recording.Meta{
		Sockscope: version, Hostname: hostname, Kernel: unix.ByteSliceToString(uts.Release[:]), Arch: runtime.GOARCH,
		Start: start.UTC(), ClockOffset: r.clock.Offset(), Interval: f.interval, HostNetns: sc.Host.Inode,
		Scope: what, Filtered: sc.Filtered(), Paths: f.syscalls, NetnsNames: map[uint32]string{}, Comms: f.comms,
	}
	for _, t := range sc.Fixed {
		if t.Name.Name != "" && t.Inode != sc.Host.Inode {
			meta.NetnsNames[t.Inode] = t.Name.Name
		}
	}
	if err := r.sink.WriteJSON(recording.BlockMeta, start, meta); err != nil {
		return fmt.Errorf("write %s: %w", f.file, err)
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
	w, err := containers.Follow(ctx, sc, setNetns, stderr, func(w *containers.Watcher) {
		w.OnUpdate = r.update
		w.OnDie = r.died
	})
	if err != nil {
		return err
	}
	if len(sc.Runtimes) == 0 {
		r.writeContainers(time.Now()) // an empty list: no container names in this recording
	}
	r.resolver = w
	// Signals are caught before "attached" is said, so a stop right after it still ends the file.
	// SIGHUP too: an SSH session that drops must leave a complete file, not one cut short.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	signal.Ignore(syscall.SIGPIPE)
	fmt.Fprintf(stderr, "sockscope: attached, recording %s to %s (Ctrl-C to stop)\n", events.Printable(what), events.Printable(f.file))
	return r.run(ctx, sigs)
}

// update follows the running containers: new ones are added to the history, gone ones stopped.
func (r *recorder) update(running []containers.Container) {
	now := time.Now()
	r.mu.Lock()
	seen := map[string]bool{}
	for _, c := range running {
		seen[c.ID] = true
		h, ok := r.history[c.ID]
		if ok && h.Stopped.IsZero() && h.Netns == c.Netns {
			continue
		}
		rc := recording.FromContainer(c)
		h = &rc
		h.Started = now.UTC()
		h.Selected = slices.ContainsFunc(r.scope.Selected, func(s containers.Selector) bool { return s.Matches(c) })
		r.history[c.ID] = h
		r.changed[c.ID] = true
	}
	for id, h := range r.history {
		if !seen[id] && h.Stopped.IsZero() {
			h.Stopped = now.UTC()
			r.changed[id] = true
		}
	}
	r.running = running
	r.forgetLocked()
	r.mu.Unlock()
	r.writeContainers(now)
}

// died records a container's exit code and the daemon's time of it. A container that stopped
// before any list showed it running (a crash loop on a busy host) joins the history from what the
// runtime's events said: its name, image, start and exit.
func (r *recorder) died(e containers.Exit) {
	at := cmp.Or(e.At, time.Now()).UTC()
	r.mu.Lock()
	if h, ok := r.history[e.ID]; ok {
		h.ExitCode = e.ExitCode
		h.Stopped = at
		r.changed[e.ID] = true
	} else if !e.Listed {
		rc := recording.FromContainer(e.Container)
		rc.Started = cmp.Or(e.Started, e.At, time.Now()).UTC()
		rc.Stopped, rc.ExitCode = at, e.ExitCode
		rc.Selected = slices.ContainsFunc(r.scope.Selected, func(s containers.Selector) bool { return s.Matches(e.Container) })
		r.history[e.ID] = &rc
		r.changed[e.ID] = true
	}
	r.mu.Unlock()
	r.writeContainers(time.Now())
}

// forgetLocked bounds the history: beyond keepStopped stopped containers, the one that stopped
// first goes, once the file has its last state.
func (r *recorder) forgetLocked() {
	var stopped []*recording.Container
	for _, h := range r.history {
		if !h.Stopped.IsZero() && !r.changed[h.ID] {
			stopped = append(stopped, h)
		}
	}
	if over := len(stopped) - keepStopped; over > 0 {
		slices.SortFunc(stopped, func(a, b *recording.Container) int { return a.Stopped.Compare(b.Stopped) })
		for _, h := range stopped[:over] {
			delete(r.history, h.ID)
		}
	}
}

// writeContainers writes what changed since the last containers block: the first block of the
// file lists every container (none, without runtimes), the others only the changes, so that a
// recording of heavy churn grows with the churn and not with the churn squared.
func (r *recorder) writeContainers(now time.Time) {
	r.mu.Lock()
	t := recording.BlockContainerChanges
	list := recording.Containers{List: []recording.Container{}}
	for id := range r.changed {
		if h, ok := r.history[id]; ok {
			list.List = append(list.List, *h)
		}
	}
	if !r.based {
		t, list.List, r.based = recording.BlockContainers, r.listLocked(), true
	}
	clear(r.changed)
	r.mu.Unlock()
	if t == recording.BlockContainerChanges && len(list.List) == 0 {
		return
	}
	slices.SortFunc(list.List, func(a, b recording.Container) int { return strings.Compare(a.ID, b.ID) })
	if err := r.sink.WriteJSON(t, now, list); err != nil {
		fmt.Fprintf(r.stderr, "sockscope: write %s: %v\n", r.f.file, err)
	}
}

func (r *recorder) listLocked() []recording.Container {
	list := make([]recording.Container, 0, len(r.history))
	for _, h := range r.history {
		list = append(list, *h)
	}
	slices.SortFunc(list, func(a, b recording.Container) int { return strings.Compare(a.ID, b.ID) })
	return list
}

// fullList is the containers block a rotated file starts with: what the recorder remembers.
func (r *recorder) fullList() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return json.Marshal(recording.Containers{List: r.listLocked()})
}

// targets are the namespaces to snapshot: the selected containers and pods (and --netns), or the
// host and every running container.
func (r *recorder) targets() []containers.Target {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scope.Targets(r.running, false)
}

// run reads events until the end, taking snapshots every interval.
func (r *recorder) run(ctx context.Context, sigs <-chan os.Signal) error {
	stop := make(chan string, 1)
	go func() {
		var end <-chan time.Time
		if r.f.duration > 0 {
			end = time.After(r.f.duration)
		}
		select {
		case <-sigs:
			stop <- "signal"
		case <-end:
			stop <- "duration"
		}
	}()

	// The event reader's result: it ends once the programs are detached and the ring drained
	// (evStop), or early on a write error.
	evErr := make(chan error, 1)
	evStop := make(chan struct{})
	go func() { evErr <- r.readEvents(ctx, evStop) }()

	// A failure ends the file with an end block that says why: what came before it reads.
	fail := func(err error) error {
		r.tracer.Detach()
		r.sink.Close(time.Now(), "error: "+err.Error())
		return err
	}
	if err := r.snapshot(); err != nil {
		return fail(err)
	}
	tick := time.NewTicker(r.f.interval)
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
		return fmt.Errorf("write %s: %w", r.f.file, err)
	}
	lost, _ := r.tracer.Lost()
	fmt.Fprintf(r.stderr, "sockscope: recorded %d events and %d socket snapshots (%d lost) to %s\n", r.nEvents, r.nSnaps, lost.Total(), r.f.file)
	return nil
}

// readEvents drains the ring buffer every poll interval and writes its events, with their owners
// and times (events.Tracker), in events blocks: one block every tenth poll that found events, or
// sooner when a block reaches eventBlock bytes. Once stop is closed (the programs detached), it
// drains what is left and returns.
func (r *recorder) readEvents(ctx context.Context, stop <-chan struct{}) error {
	const eventBlock = 1 << 20
	buf := make([]byte, 0, eventBlock+events.RecordSize)
	var werr error
	flush := func() {
		if len(buf) == 0 || werr != nil {
			return
		}
		r.nEvents += uint64(len(buf) / events.RecordSize)
		if err := r.sink.Write(recording.BlockEvents, time.Now(), buf); err != nil {
			werr = fmt.Errorf("write %s: %w", r.f.file, err)
		}
		buf = buf[:0]
	}
	tr := loader.NewTracking(r.tracer)
	take := func(ev *events.Event) {
		// A namespace no runtime has named yet: a pod or container that just started. Asking now
		// puts it in the container history before its first snapshot (rate-limited).
		r.resolver.Resolve(ctx, ev.Netns)
		buf = events.AppendEvent(buf, ev)
		if len(buf) >= eventBlock {
			flush()
		}
	}
	poll := time.NewTicker(loader.PollInterval)
	defer poll.Stop()
	for n := 1; ; n++ {
		select {
		case <-stop:
			tr.Drain(take)
			flush()
			return werr
		case <-poll.C:
		}
		tr.Drain(take)
		if n%10 == 0 {
			flush()
		}
		if werr != nil {
			return werr
		}
	}
}

// snapshot writes the sockets of every target namespace, the syscall counts, the lost counts and
// the facts.
func (r *recorder) snapshot() error {
	now := time.Now()
	write := func(t recording.BlockType, v any) error {
		if err := r.sink.WriteJSON(t, now, v); err != nil {
			return fmt.Errorf("write %s: %w", r.f.file, err)
		}
		return nil
	}
	rawOwners, err := r.socks.Owners()
	if err != nil {
		return err
	}
	var facts recording.Facts
	inodes := map[uint32]bool{}
	for _, t := range r.targets() {
		snap, err := r.socks.Snapshot(t.Path)
		if errors.Is(err, loader.ErrNetnsGone) {
			continue // its container just stopped
		}
		if err != nil {
			fmt.Fprintf(r.stderr, "sockscope: warning: snapshot of netns %d: %v\n", t.Inode, err)
			continue
		}
		inodes[t.Inode] = true
		s := recording.SocketSnapshot{Netns: t.Inode, PortRange: snap.PortRange, TWReuse: snap.TWReuse, Records: snap.Records}
		s.Owners = ownersOf(snap.Records, rawOwners)
		if err := r.sink.Write(recording.BlockSockets, now, recording.EncodeSockets(&s)); err != nil {
			return fmt.Errorf("write %s: %w", r.f.file, err)
		}
		r.nSnaps++
		facts.Netns = append(facts.Netns, recording.NetnsFacts{Netns: t.Inode, PortRange: snap.PortRange, TWReuse: snap.TWReuse, Somaxconn: snap.Somaxconn})
	}
	facts.Processes = processesIn(inodes)
	if err := write(recording.BlockFacts, facts); err != nil {
		return err
	}
	if r.counter != nil {
		counts, err := r.counter.Read()
		if err != nil {
			return err
		}
		if err := write(recording.BlockSyscalls, recordedSyscalls(counts)); err != nil {
			return err
		}
	}
	if r.stacks != nil {
		st, err := recordedStacks(r.stacks, r.f.stacks)
		if err != nil {
			return err
		}
		if len(st.List) > 0 || st.Matched > 0 {
			if err := write(recording.BlockStacks, st); err != nil {
				return err
			}
		}
	}
	lost, err := r.tracer.Lost()
	if err != nil {
		return err
	}
	return write(recording.BlockLost, recording.Lost{RingFull: lost.RingFull, Nested: lost.Nested})
}

// ownersOf keeps the owner records of the sockets in records: the owner iterator lists every
// socket file on the machine.
func ownersOf(records, owners []byte) []byte {
	want := map[uint32]bool{}
	for b := records; len(b) >= events.SocketRecordSize; b = b[events.SocketRecordSize:] {
		if ino := events.SocketInode(b); ino != 0 {
			want[ino] = true
		}
	}
	var out []byte
	for b := owners; len(b) >= events.OwnerRecordSize; b = b[events.OwnerRecordSize:] {
		if want[events.OwnerInode(b)] {
			out = append(out, b[:events.OwnerRecordSize]...)
		}
	}
	return out
}

// processesIn lists the processes living in the given namespaces with their open-files limit:
// the number behind EMFILE. It reads /proc once per interval, not per event.
func processesIn(inodes map[uint32]bool) []recording.Process {
	out := []recording.Process{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		ino, err := containers.NetnsInode(pid)
		if err != nil || !inodes[ino] {
			continue
		}
		comm, _ := os.ReadFile(d + "/comm")
		p := recording.Process{Pid: uint32(pid), Netns: ino, Comm: strings.TrimSpace(string(comm)), NofileSoft: -1, NofileHard: -1}
		var lim unix.Rlimit
		if unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim) == nil {
			if lim.Cur != unix.RLIM_INFINITY {
				p.NofileSoft = int64(lim.Cur)
			}
			if lim.Max != unix.RLIM_INFINITY {
				p.NofileHard = int64(lim.Max)
			}
		}
		if fds, err := os.ReadDir(d + "/fd"); err == nil {
			p.Fds = len(fds)
		}
		out = append(out, p)
	}
	return out
}

// recordedStacks returns the stacks counted since the last take, as a recording's stacks block
// holds them.
func recordedStacks(c *collector.Collector, syscalls []string) (recording.Stacks, error) {
	rows, unresolved, st, err := c.Take()
	if err != nil {
		return recording.Stacks{}, err
	}
	out := recording.Stacks{Exact: c.Exact(), Syscalls: syscalls, RatePerCPU: c.Rate(), Matched: st.Matched, Sampled: st.Sampled,
		Lost: st.Lost, NotUnwound: unresolved, List: make([]recording.StackCount, 0, len(rows))}
	for _, r := range rows {
		sc := recording.StackCount{Netns: r.Netns, Comm: r.Comm, Syscall: r.Syscall, Truncated: r.Counted.Stack.Truncated, Count: r.Counted.Count,
			Frames: make([]string, len(r.Counted.Stack.Frames))}
		for i := range r.Counted.Stack.Frames {
			sc.Frames[i] = r.Counted.Stack.Frames[i].Name()
		}
		out.List = append(out.List, sc)
	}
	if len(out.NotUnwound) == 0 {
		out.NotUnwound = nil
	}
	return out, nil
}
