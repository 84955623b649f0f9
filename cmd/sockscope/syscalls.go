package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader/syscalls"
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

var byFields = []string{"container", "comm", "pid", "syscall"}

func parseSyscallsFlags(args []string, stdout io.Writer) (*syscallsFlags, bool, error) {
	f := &syscallsFlags{}
	fs := newFlagSet("sockscope syscalls")
	fs.StringArrayVarP(&f.containers, "container", "c", nil, "count the syscalls of this container or pod: a name, an ID prefix, NAMESPACE/POD, or a pod name; repeatable")
	fs.IntVar(&f.pid, "pid", 0, "only this process (host PID)")
	fs.StringArrayVar(&f.netns, "netns", nil, "only tasks in this network namespace: an inode, or a path such as /proc/PID/ns/net or /run/netns/NAME; repeatable")
	fs.StringSliceVar(&f.by, "by", byFields, "aggregate by these fields: container, comm, pid, syscall")
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
		if !slices.Contains(byFields, b) {
			return nil, false, usageError{fmt.Sprintf("--by %q: use any of %s", b, strings.Join(byFields, ","))}
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
	if f.read != "" {
		return replaySyscalls(f, stdout, stderr)
	}
	if err := prepare(); err != nil {
		return err
	}
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

	cfg := syscalls.Config{FilterNetns: sc.Filtered(), Netns: sc.FixedInodes(), Pid: uint32(f.pid), Comms: f.comms, Latency: f.latency, Paths: f.paths,
		PathSyscalls: syscalls.PathSyscallsFor(runtime.GOARCH)}
	counter, err := syscalls.Open(cfg)
	if err != nil {
		return err
	}
	defer counter.Close()
	var col *collector.Collector
	setNetns := func(inodes []uint32) error {
		if err := counter.SetNetns(inodes); err != nil {
			return err
		}
		if col != nil {
			return col.SetNetns(inodes)
		}
		return nil
	}
	if f.stacks {
		// The sampler starts before the watcher, so the watcher's first namespaces reach it too.
		o := collector.Options{Pid: f.pid, Comms: f.comms, Syscalls: f.syscalls, Kernel: f.kernelStacks, Rate: f.stackRate}
		if col, err = collector.Open(o, sc, stderr); err != nil {
			return err
		}
		defer col.Close()
	}
	w, err := containers.Follow(ctx, sc, setNetns, stderr)
	if err != nil {
		return err
	}
	names := w.Names()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	signal.Ignore(syscall.SIGPIPE)
	fmt.Fprintf(stderr, "sockscope: attached, counting syscalls (Ctrl-C to print and stop)\n")
	var end <-chan time.Time
	if f.duration > 0 {
		end = time.After(f.duration)
	}
	var tick <-chan time.Time
	if f.interval > 0 {
		t := time.NewTicker(f.interval)
		defer t.Stop()
		tick = t.C
	}
	p := &syscallPrinter{f: f, names: names, w: stdout}
	for {
		select {
		case <-tick:
			if err := p.readAll(counter, col, stderr); err != nil {
				return err
			}
			continue
		case <-sigs:
		case <-end:
		}
		if col != nil {
			col.Stop()
		}
		return p.readAll(counter, col, stderr)
	}
}

// syscallPrinter prints what was counted since its last print.
type syscallPrinter struct {
	f     *syscallsFlags
	names namer
	w     io.Writer
	prev  *syscalls.Snapshot
	drops [3]uint64
}

type sysRow struct {
	container, id, comm, syscall, errno, path string
	k8sNamespace, k8sPod                      string
	netns, pid                                uint32
	count, errors                             uint64
	latTotal, latMax                          time.Duration
}

func (p *syscallPrinter) group(k syscalls.Key) sysRow {
	r := sysRow{}
	by := p.f.by
	if slices.Contains(by, "container") {
		n, ok := p.names.Lookup(k.Netns)
		if !ok {
			n.Name = strconv.FormatUint(uint64(k.Netns), 10)
		}
		r.container, r.id, r.netns, r.k8sNamespace, r.k8sPod = n.Name, n.ID, k.Netns, n.Namespace, n.Pod
	}
	if slices.Contains(by, "comm") {
		r.comm = k.Comm
	}
	if slices.Contains(by, "pid") {
		r.pid = k.Tgid
	}
	if slices.Contains(by, "syscall") {
		r.syscall = events.SyscallName(runtime.GOARCH, k.Nr)
	}
	return r
}

func (p *syscallPrinter) wanted(k syscalls.Key) bool {
	if len(p.f.comms) > 0 && !slices.Contains(p.f.comms, k.Comm) {
		return false
	}
	if len(p.f.syscalls) == 0 {
		return true
	}
	return slices.Contains(p.f.syscalls, events.SyscallName(runtime.GOARCH, k.Nr))
}

// readAll prints the counts, then the stacks (with -o folded, only the stacks).
func (p *syscallPrinter) readAll(counter *syscalls.Counter, col *collector.Collector, stderr io.Writer) error {
	if p.f.output != "folded" {
		if err := p.read(counter, stderr); err != nil {
			return err
		}
	}
	if col == nil {
		return nil
	}
	return printStacks(col, p.names, p.w, stderr, p.f)
}

func (p *syscallPrinter) read(counter *syscalls.Counter, stderr io.Writer) error {
	cur, err := counter.Read()
	if err != nil {
		return err
	}
	return p.print(cur, time.Now(), stderr)
}

// print prints what cur counted since the previous print; at is when it was read.
func (p *syscallPrinter) print(cur syscalls.Snapshot, at time.Time, stderr io.Writer) error {
	for i, n := range cur.Dropped {
		if n > p.drops[i] {
			fmt.Fprintf(stderr, "sockscope: warning: %d %s did not fit the kernel's table and were not counted\n",
				n-p.drops[i], []string{"processes' syscalls", "errno counts", "paths"}[i])
		}
	}
	p.drops = cur.Dropped
	prevCount := map[syscalls.Key]syscalls.Count{}
	prevErr := map[errKeyT]uint64{}
	prevPath := map[pathKeyT]uint64{}
	if p.prev != nil {
		for _, c := range p.prev.Counts {
			prevCount[c.Key] = c
		}
		for _, e := range p.prev.Errors {
			prevErr[errKey(e)] = e.Count
		}
		for _, pc := range p.prev.Paths {
			prevPath[pathKey(pc)] = pc.Count
		}
	}
	p.prev = &cur

	counts := map[sysRow]*sysRow{}
	for _, c := range cur.Counts {
		if !p.wanted(c.Key) {
			continue
		}
		pc := prevCount[c.Key]
		if c.Count-pc.Count == 0 {
			continue
		}
		r := rowOf(counts, p.group(c.Key))
		r.count += c.Count - pc.Count
		r.errors += c.Errors - pc.Errors
		r.latTotal += c.LatTotal - pc.LatTotal
		r.latMax = max(r.latMax, c.LatMax)
	}
	errs := map[sysRow]*sysRow{}
	if p.f.errors {
		for _, e := range cur.Errors {
			if !p.wanted(e.Key) || e.Count-prevErr[errKey(e)] == 0 {
				continue
			}
			g := p.group(e.Key)
			g.errno = events.ErrnoName(e.Errno)
			rowOf(errs, g).count += e.Count - prevErr[errKey(e)]
		}
	}
	paths := map[sysRow]*sysRow{}
	if p.f.paths {
		for _, pc := range cur.Paths {
			if !p.wanted(pc.Key) || pc.Count-prevPath[pathKey(pc)] == 0 {
				continue
			}
			g := p.group(pc.Key)
			g.path = pc.Path
			rowOf(paths, g).count += pc.Count - prevPath[pathKey(pc)]
		}
	}
	var out strings.Builder
	if p.f.output == "json" {
		for _, t := range []struct {
			typ  string
			rows map[sysRow]*sysRow
		}{{"syscall", counts}, {"error", errs}, {"path", paths}} {
			for _, r := range topRows(t.rows, p.f.top) {
				p.appendJSON(&out, t.typ, r)
			}
		}
	} else {
		p.appendTables(&out, at, counts, errs, paths)
	}
	if _, err := io.WriteString(p.w, out.String()); err != nil && !isEPIPE(err) {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// rowOf returns the row of group g in m, adding it with zero counts.
func rowOf(m map[sysRow]*sysRow, g sysRow) *sysRow {
	r := m[g]
	if r == nil {
		r = &g
		m[g] = r
	}
	return r
}

type errKeyT struct {
	syscalls.Key
	errno syscall.Errno
}

func errKey(e syscalls.Errors) errKeyT { return errKeyT{e.Key, e.Errno} }

type pathKeyT struct {
	syscalls.Key
	path string
}

func pathKey(p syscalls.PathCount) pathKeyT { return pathKeyT{p.Key, p.Path} }

func topRows(m map[sysRow]*sysRow, n int) []*sysRow {
	rows := make([]*sysRow, 0, len(m))
	for _, r := range m {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b *sysRow) int {
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.container, b.container), cmp.Compare(a.comm, b.comm), cmp.Compare(a.pid, b.pid),
			cmp.Compare(a.syscall, b.syscall), cmp.Compare(a.errno, b.errno), cmp.Compare(a.path, b.path))
	})
	return rows[:min(n, len(rows))]
}

func (p *syscallPrinter) appendJSON(out *strings.Builder, typ string, r *sysRow) {
	v := map[string]any{"type": typ, "count": r.count}
	if slices.Contains(p.f.by, "container") {
		v["container"], v["container_id"], v["netns"] = r.container, r.id, r.netns
		v["k8s_namespace"], v["k8s_pod"] = r.k8sNamespace, r.k8sPod
	}
	if slices.Contains(p.f.by, "comm") {
		v["comm"] = r.comm
	}
	if slices.Contains(p.f.by, "pid") {
		v["pid"] = r.pid
	}
	if slices.Contains(p.f.by, "syscall") {
		v["syscall"] = r.syscall
	}
	switch typ {
	case "syscall":
		v["errors"] = r.errors
		if p.f.latency {
			v["latency_avg_us"] = float64(r.latTotal.Microseconds()) / float64(max(r.count, 1))
			v["latency_max_us"] = r.latMax.Microseconds()
		}
	case "error":
		v["errno"] = r.errno
	case "path":
		v["path"] = r.path
	}
	b, _ := json.Marshal(v)
	out.Write(b)
	out.WriteByte('\n')
}

func (p *syscallPrinter) appendTables(out *strings.Builder, at time.Time, counts, errs, paths map[sysRow]*sysRow) {
	head := func(tw *tabwriter.Writer, extra ...string) {
		var cols []string
		for _, b := range byFields {
			if slices.Contains(p.f.by, b) {
				cols = append(cols, strings.ToUpper(b))
			}
		}
		fmt.Fprintln(tw, strings.Join(append(cols, extra...), "\t"))
	}
	cells := func(r *sysRow) []string {
		var c []string
		for _, b := range byFields {
			if !slices.Contains(p.f.by, b) {
				continue
			}
			switch b {
			case "container":
				c = append(c, events.Printable(r.container))
			case "comm":
				c = append(c, events.Printable(r.comm))
			case "pid":
				c = append(c, strconv.FormatUint(uint64(r.pid), 10))
			case "syscall":
				c = append(c, r.syscall)
			}
		}
		return c
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	if p.f.interval > 0 {
		fmt.Fprintf(out, "%s\n", at.Local().Format("15:04:05"))
	}
	extra := []string{"COUNT", "ERRORS"}
	if p.f.latency {
		extra = append(extra, "AVG_US", "MAX_US")
	}
	head(tw, extra...)
	for _, r := range topRows(counts, p.f.top) {
		c := append(cells(r), strconv.FormatUint(r.count, 10), strconv.FormatUint(r.errors, 10))
		if p.f.latency {
			c = append(c, strconv.FormatFloat(float64(r.latTotal.Nanoseconds())/1000/float64(max(r.count, 1)), 'f', 1, 64),
				strconv.FormatInt(r.latMax.Microseconds(), 10))
		}
		fmt.Fprintln(tw, strings.Join(c, "\t"))
	}
	tw.Flush()
	if p.f.errors {
		out.WriteString("\nfailures:\n")
		tw = tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
		head(tw, "ERRNO", "COUNT")
		for _, r := range topRows(errs, p.f.top) {
			fmt.Fprintln(tw, strings.Join(append(cells(r), r.errno, strconv.FormatUint(r.count, 10)), "\t"))
		}
		tw.Flush()
	}
	if p.f.paths {
		out.WriteString("\npaths:\n")
		tw = tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
		head(tw, "COUNT", "PATH")
		for _, r := range topRows(paths, p.f.top) {
			fmt.Fprintln(tw, strings.Join(append(cells(r), strconv.FormatUint(r.count, 10), events.Printable(r.path)), "\t"))
		}
		tw.Flush()
	}
}
