// Command sysbench measures what `sockscope syscalls` adds to each syscall: a tight getppid loop
// (tools/sysload), pinned to one CPU, in a network namespace of its own, timed by the loop
// itself, alternating in one run between no tracer, sockscope counting another namespace (the
// loop's calls leave at the netns check), sockscope counting the loop, the same with --latency,
// with --stacks (every call's stack copied, and a rate-limited sample), and bpftrace's
// syscount.bt. `make bench` runs it; it needs root.
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
)

type mode struct {
	name   string
	tracer func(ns, other string) []string // argv, nil for none
	ready  string                          // stderr (or stdout) prefix once attached
}

func main() {
	sockscope := flag.String("sockscope", "bin/sockscope", "sockscope binary")
	sysload := flag.String("sysload", "bin/sysload", "sysload binary")
	calls := flag.Int("calls", 5000000, "getppid calls per measurement")
	rounds := flag.Int("rounds", 5, "rounds (the median is reported)")
	out := flag.String("out", "", "also write the markdown report here")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail(errors.New("needs root"))
	}
	ns, other := fmt.Sprintf("sysbench-%d", os.Getpid()), fmt.Sprintf("sysbench-other-%d", os.Getpid())
	for _, n := range []string{ns, other} {
		if err := exec.Command("ip", "netns", "add", n).Run(); err != nil {
			fail(fmt.Errorf("ip netns add %s: %v", n, err))
		}
		defer exec.Command("ip", "netns", "delete", n).Run()
	}
	modes := []mode{
		{"no tracer", nil, ""},
		{"sockscope syscalls, another netns traced", func(ns, other string) []string {
			return []string{*sockscope, "syscalls", "--netns", "/run/netns/" + other, "--duration", "10m"}
		}, "sockscope: attached"},
		{"sockscope syscalls, the loop counted", func(ns, other string) []string {
			return []string{*sockscope, "syscalls", "--netns", "/run/netns/" + ns, "--duration", "10m"}
		}, "sockscope: attached"},
		{"sockscope syscalls --latency, the loop counted", func(ns, other string) []string {
			return []string{*sockscope, "syscalls", "--latency", "--netns", "/run/netns/" + ns, "--duration", "10m"}
		}, "sockscope: attached"},
		// Every getppid's registers and 16 KB of stack copied to the ring (and unwound on the
		// other CPU, or counted lost when the ring is full): the in-kernel cost of exact stacks.
		{"sockscope syscalls --stacks --syscall getppid, the loop counted", func(ns, other string) []string {
			return []string{*sockscope, "syscalls", "--stacks", "--syscall", "getppid", "--netns", "/run/netns/" + ns, "--duration", "10m", "--runtime-endpoint", "none"}
		}, "sockscope: attached"},
		// No syscall filter: 200 stacks per CPU per second, the rest pass the rate check.
		{"sockscope syscalls --stacks (sampled), the loop counted", func(ns, other string) []string {
			return []string{*sockscope, "syscalls", "--stacks", "--netns", "/run/netns/" + ns, "--duration", "10m", "--runtime-endpoint", "none"}
		}, "sockscope: attached"},
	}
	if p, err := exec.LookPath("syscount.bt"); err == nil {
		modes = append(modes, mode{"bpftrace syscount.bt", func(string, string) []string { return []string{"bpftrace", p} }, "Attaching"})
	}
	results := make([][]float64, len(modes))
	for r := 0; r < *rounds; r++ {
		for i, m := range modes {
			ns1, err := measure(m, ns, other, *sysload, *calls)
			if err != nil {
				fail(fmt.Errorf("%s: %w", m.name, err))
			}
			results[i] = append(results[i], ns1)
			fmt.Fprintf(os.Stderr, "sysbench: round %d %-48s %.1f ns/call\n", r+1, m.name, ns1)
		}
	}
	var w strings.Builder
	fmt.Fprintf(&w, "### `sockscope syscalls` benchmark\n\nMeasured %s, %d rounds of %d getppid calls pinned to CPU 0 in a netns of their own (modes alternate within each round; medians).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), *rounds, *calls)
	fmt.Fprintf(&w, "| mode | ns per getppid | added | target |\n|---|---:|---:|---|\n")
	base := median(results[0])
	targets := map[int]string{1: "≤ 30 ns", 2: "≤ 100 ns"}
	for i, m := range modes {
		med := median(results[i])
		fmt.Fprintf(&w, "| %s | %.1f | %+.1f | %s |\n", m.name, med, med-base, targets[i])
	}
	fmt.Print(w.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(w.String()), 0o644); err != nil {
			fail(err)
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "sysbench: %v\n", err)
	os.Exit(1)
}

// measure starts the mode's tracer, waits until it is attached, runs the loop and stops it.
func measure(m mode, ns, other, sysload string, calls int) (float64, error) {
	if m.tracer != nil {
		argv := m.tracer(ns, other)
		cmd := exec.Command(argv[0], argv[1:]...)
		pr, pw, _ := os.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			return 0, err
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
				return 0, errors.New("tracer exited before attaching")
			}
		case <-time.After(30 * time.Second):
			return 0, errors.New("tracer did not attach")
		}
		if strings.HasPrefix(m.ready, "Attaching") {
			time.Sleep(2 * time.Second) // bpftrace prints before it has attached
		}
	}
	dir, _ := os.MkdirTemp("", "sysbench")
	defer os.RemoveAll(dir)
	out, err := exec.Command("ip", "netns", "exec", ns, "taskset", "-c", "0", sysload, "-dir", dir, "-getppid", fmt.Sprint(calls)).Output()
	if err != nil {
		return 0, fmt.Errorf("sysload: %v", err)
	}
	var r struct {
		NS float64 `json:"ns_per_getppid"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("sysload output %q: %v", out, err)
	}
	return r.NS, nil
}
