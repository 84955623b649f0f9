// Command sysbench measures what `sockscope syscalls` adds to each syscall: a tight getppid loop
// (tools/load/sysload), pinned to one CPU, in a network namespace of its own, timed by the loop
// itself. Each round runs every mode once, in an order rotated from round to round: no tracer;
// the floors (an empty tp_btf program on sys_exit, the counters' hook, and empty programs on
// sys_enter and sys_exit, the hooks of --latency; the counting floor on sys_exit, the least a
// per-namespace counter does, selecting another namespace and the loop's), attached by the harness; sockscope counting
// another namespace (the loop's calls leave at the netns check); sockscope counting the loop; the
// same with --latency; with --stacks (every call's stack copied, and a rate-limited sample); and,
// where installed, libbpf-tools' syscount and bpftrace's syscount.bt. Each figure is the median
// over the rounds, beside its floor. `make bench` runs it; it needs root. A step is measured
// against the build before it in the same rounds with -compare NAME=PATH, and -modes TEXT keeps
// only the modes named with TEXT (beside the baseline and the floors). -stats adds the time inside
// the BPF programs per call, from the kernel's statistics: where whole-call timing cannot resolve
// a step of a few nanoseconds (a VM whose kernel switches page tables at every syscall), the
// programs' own time can.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

type mode struct {
	name   string
	tracer func(ns, other string) []string // argv, nil for none
	ready  string                          // stderr (or stdout) prefix once attached
	floor  []string                        // hooks of empty programs the harness attaches itself
	target string                          // what the mode must stay within
}

func main() {
	sockscope := flag.String("sockscope", "bin/sockscope", "sockscope binary")
	sysload := flag.String("sysload", "bin/sysload", "sysload binary")
	calls := flag.Int("calls", 5000000, "getppid calls per measurement")
	rounds := flag.Int("rounds", 6, "rounds, each running every mode once (the median is reported)")
	out := flag.String("out", "", "also write the markdown report here")
	compare := benchkit.CompareFlag(flag.CommandLine, "also count with another sockscope binary in every round")
	stats := flag.Bool("stats", false, "also report the time inside the BPF programs per call, from the kernel's statistics (enabled for the run; they add two clock reads to every run of every program): a step of a few nanoseconds that whole-call timing cannot resolve")
	only := flag.String("modes", "", "run only the modes whose names contain this text, beside the baseline and the floors (for a quick step; the report of `make bench` runs them all)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail(errors.New("needs root"))
	}
	// The namespaces are deleted on every exit path: a failure, Ctrl-C, or the end.
	benchkit.CleanupOnSignal()
	defer benchkit.RunCleanups()
	ns, other := fmt.Sprintf("sysbench-%d", os.Getpid()), fmt.Sprintf("sysbench-other-%d", os.Getpid())
	for _, n := range []string{ns, other} {
		if _, err := benchkit.CreateNetns(n); err != nil {
			fail(fmt.Errorf("ip netns add %s: %v", n, err))
		}
	}
	inode := func(n string) uint32 {
		ino, err := containers.NetnsInodeOfPath("/run/netns/" + n)
		if err != nil {
			fail(err)
		}
		return ino
	}
	const exitFloor, bothFloor = "floor: an empty `tp_btf` program on sys_exit", "floor: empty `tp_btf` programs on sys_enter and sys_exit"
	modes := []mode{
		{name: "no tracer"},
		{name: exitFloor, floor: []string{benchkit.HookSysExit}},
		// The least a per-namespace filter does on sys_exit: the task's namespace read (three
		// dependent loads), a one-entry namespace table checked; and, for the loop's own
		// namespace, one per-CPU counter added to.
		{name: "counting floor on sys_exit, another netns selected", floor: []string{fmt.Sprintf("%s@%d", benchkit.HookSysExitFilter, inode(other))}},
		{name: "counting floor on sys_exit, the loop's netns selected", floor: []string{fmt.Sprintf("%s@%d", benchkit.HookSysExitFilter, inode(ns))}},
		{name: bothFloor, floor: []string{benchkit.HookSysEnter, benchkit.HookSysExit}},
	}
	// Counting, by sockscope and by each -compare build: the two modes with targets.
	for _, c := range append([][2]string{{"sockscope", *sockscope}}, *compare...) {
		name, bin := c[0], c[1]
		modes = append(modes,
			mode{name: name + " syscalls, another netns traced", tracer: func(ns, other string) []string {
				return []string{bin, "syscalls", "--netns", "/run/netns/" + other, "--duration", "10m"}
			}, ready: "sockscope: attached", target: exitFloor + " +10 ns"},
			mode{name: name + " syscalls, the loop counted", tracer: func(ns, other string) []string {
				return []string{bin, "syscalls", "--netns", "/run/netns/" + ns, "--duration", "10m"}
			}, ready: "sockscope: attached", target: exitFloor + " +60 ns"})
	}
	modes = append(modes, []mode{
		{name: "sockscope syscalls --latency, the loop counted", tracer: func(ns, other string) []string {
			return []string{*sockscope, "syscalls", "--latency", "--netns", "/run/netns/" + ns, "--duration", "10m"}
		}, ready: "sockscope: attached"},
		// Every getppid's registers and 16 KB of stack copied to the ring (and unwound on the
		// other CPU, or counted lost when the ring is full): the in-kernel cost of exact stacks.
		{name: "sockscope syscalls --stacks --syscall getppid, the loop counted", tracer: func(ns, other string) []string {
			return []string{*sockscope, "syscalls", "--stacks", "--syscall", "getppid", "--netns", "/run/netns/" + ns, "--duration", "10m", "--runtime-endpoint", "none"}
		}, ready: "sockscope: attached"},
		// No syscall filter: 200 stacks per CPU per second, the rest pass the rate check.
		{name: "sockscope syscalls --stacks (sampled), the loop counted", tracer: func(ns, other string) []string {
			return []string{*sockscope, "syscalls", "--stacks", "--netns", "/run/netns/" + ns, "--duration", "10m", "--runtime-endpoint", "none"}
		}, ready: "sockscope: attached"},
	}...)
	if p, err := exec.LookPath("syscount"); err == nil {
		if sb, err := exec.LookPath("stdbuf"); err == nil {
			// Line-buffered: it says "Tracing syscalls" once attached, into a pipe here.
			modes = append(modes, mode{name: "libbpf-tools syscount", tracer: func(string, string) []string { return []string{sb, "-oL", p} }, ready: "Tracing syscalls"})
		}
	}
	if p, err := exec.LookPath("syscount.bt"); err == nil {
		modes = append(modes, mode{name: "bpftrace syscount.bt", tracer: func(string, string) []string { return []string{"bpftrace", p} }, ready: "Attaching"})
	}
	if *only != "" {
		modes = slices.DeleteFunc(modes, func(m mode) bool {
			return m.name != "no tracer" && m.floor == nil && !strings.Contains(m.name, *only)
		})
	}
	if *stats {
		c, err := benchkit.EnableStats()
		if err != nil {
			fail(fmt.Errorf("BPF statistics: %w", err))
		}
		defer c.Close()
	}
	load0 := benchkit.LoadAvg()
	results := make([][]float64, len(modes))
	inBPF := make([][]float64, len(modes))
	for r := 0; r < *rounds; r++ {
		for k := range modes {
			i := (k + r) % len(modes) // the order rotates from round to round
			m := modes[i]
			ns1, bpf1, err := measure(m, ns, other, *sysload, *calls, *stats)
			if err != nil {
				fail(fmt.Errorf("%s: %w", m.name, err))
			}
			results[i] = append(results[i], ns1)
			inBPF[i] = append(inBPF[i], bpf1)
			fmt.Fprintf(os.Stderr, "sysbench: round %d %-48s %.1f ns/call", r+1, m.name, ns1)
			if *stats {
				fmt.Fprintf(os.Stderr, ", %.1f ns in BPF", bpf1)
			}
			fmt.Fprintln(os.Stderr)
		}
	}
	var w strings.Builder
	fmt.Fprintf(&w, "### `sockscope syscalls` benchmark\n\nMeasured %s on Linux %s (load average at start: %s, at end: %s), %d rounds of %d getppid calls pinned to CPU 0 in a netns of their own; each round runs every mode once, in an order rotated from round to round; medians, and the range over the rounds.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), benchkit.Kernel(), load0, benchkit.LoadAvg(), *rounds, *calls)
	if *stats {
		fmt.Fprintf(&w, "BPF run-time statistics were on for the whole run (two clock reads more in every program run, so every mode but the baseline is slower than without them); the last column is the time inside the programs per call, from those statistics.\n\n")
	}
	fmt.Fprintf(&w, "| mode | ns per getppid (range) | added | target | met |")
	if *stats {
		fmt.Fprintf(&w, " ns in BPF per call (range) |")
	}
	fmt.Fprintf(&w, "\n|---|---:|---:|---|---|")
	if *stats {
		fmt.Fprintf(&w, "---:|")
	}
	fmt.Fprintln(&w)
	base := benchkit.Median(results[0])
	added := map[string]float64{}
	for i, m := range modes {
		med := benchkit.Median(results[i])
		added[m.name] = med - base
		lo, hi := slices.Min(results[i]), slices.Max(results[i])
		target, met := "", ""
		if m.target != "" {
			floor, extra, _ := strings.Cut(m.target, " +")
			var limit float64
			fmt.Sscanf(extra, "%f", &limit)
			target = fmt.Sprintf("≤ %+.1f (the floor %+.1f, +%s)", added[floor]+limit, added[floor], extra)
			met = benchkit.Verdict(med-base <= added[floor]+limit)
		}
		fmt.Fprintf(&w, "| %s | %.1f (%.1f–%.1f) | %+.1f | %s | %s |", m.name, med, lo, hi, med-base, target, met)
		if *stats {
			fmt.Fprintf(&w, " %.1f (%.1f–%.1f) |", benchkit.Median(inBPF[i]), slices.Min(inBPF[i]), slices.Max(inBPF[i]))
		}
		fmt.Fprintln(&w)
	}
	if err := benchkit.Emit(w.String(), *out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "sysbench: %v\n", err)
	benchkit.RunCleanups()
	os.Exit(1)
}

// measure starts the mode's tracer, waits until it is attached, runs the loop and stops it. It
// returns the loop's time per call and, with stats, the time per call inside the programs that
// ran on each of its calls.
func measure(m mode, ns, other, sysload string, calls int, stats bool) (float64, float64, error) {
	if m.floor != nil {
		f, err := benchkit.AttachFloor(m.floor...)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
	}
	if m.tracer != nil {
		argv := m.tracer(ns, other)
		cmd := exec.Command(argv[0], argv[1:]...)
		pr, pw, _ := os.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			return 0, 0, err
		}
		pw.Close()
		defer func() {
			cmd.Process.Signal(syscall.SIGINT)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
			}
			pr.Close()
		}()
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(pr)
			ok := false
			for sc.Scan() {
				if !ok && strings.HasPrefix(sc.Text(), m.ready) {
					ok = true
					ready <- true
				}
			}
			if !ok {
				ready <- false
			}
		}()
		select {
		case ok := <-ready:
			if !ok {
				return 0, 0, errors.New("tracer exited before attaching")
			}
		case <-time.After(30 * time.Second):
			return 0, 0, errors.New("tracer did not attach")
		}
		if strings.HasPrefix(m.ready, "Attaching") {
			time.Sleep(2 * time.Second) // bpftrace prints before it has attached
		}
	}
	dir, _ := os.MkdirTemp("", "sysbench")
	defer os.RemoveAll(dir)
	var before map[ebpf.ProgramID]benchkit.ProgRun
	if stats {
		var err error
		if before, err = benchkit.ProgramRuns(); err != nil {
			return 0, 0, err
		}
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "taskset", "-c", "0", sysload, "-dir", dir, "-getppid", fmt.Sprint(calls)).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("sysload: %v", err)
	}
	var r struct {
		NS float64 `json:"ns_per_getppid"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, 0, fmt.Errorf("sysload output %q: %v", out, err)
	}
	var inBPF float64
	if stats {
		after, err := benchkit.ProgramRuns()
		if err != nil {
			return 0, 0, err
		}
		inBPF, _ = benchkit.InProgram(before, after, uint64(calls))
	}
	return r.NS, inBPF, nil
}
