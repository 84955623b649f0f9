// Command membench measures sockscope's memory against the floor of a tracer, in the same run:
// each round starts every mode once, in an order rotated from round to round, waits until it is
// attached and has settled, and reads its resident memory (VmRSS, with its anonymous and
// file-backed parts) and its peak (VmHWM) from /proc/PID/status. The modes: two floors built
// from tools/bench/memory/floor (one empty program and trace's 4 MiB ring, with cilium/ebpf
// alone, and again linking the packages the design names), then `sockscope trace`, `syscalls`
// and `export`, idle, on a network namespace of their own. Medians and the range over the rounds.
// `make bench` runs it from the repository's root (it builds the floors with go); it needs root.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

type mode struct {
	name  string
	argv  []string
	ready string // stderr prefix once attached
}

// mem is one reading of /proc/PID/status, in kB, and the time from exec to the ready line.
type mem struct {
	rss, anon, file, hwm int64
	attach               time.Duration
}

func main() {
	sockscope := flag.String("sockscope", "bin/sockscope", "sockscope binary")
	rounds := flag.Int("rounds", 5, "rounds, each starting every mode once (the median is reported)")
	settle := flag.Duration("settle", 2*time.Second, "time between attached and the reading")
	out := flag.String("out", "", "also write the markdown report here")
	compare := benchkit.CompareFlag(flag.CommandLine, "also run sockscope's modes with another build in every round")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail(errors.New("needs root"))
	}
	benchkit.CleanupOnSignal()
	defer benchkit.RunCleanups()
	dir, err := os.MkdirTemp("", "membench")
	if err != nil {
		fail(err)
	}
	benchkit.AtExit(func() { os.RemoveAll(dir) })
	// Built as bin/sockscope is (Makefile: CGO_ENABLED=0, -trimpath, -s -w).
	floorEbpf, floorDesign := filepath.Join(dir, "floor-ebpf"), filepath.Join(dir, "floor-design")
	for _, b := range [][]string{{floorEbpf}, {floorDesign, "-tags", "designpkgs"}} {
		args := append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", b[0]}, b[1:]...)
		cmd := exec.Command("go", append(args, "./tools/bench/memory/floor")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fail(fmt.Errorf("build the floor (run from the repository's root): %v: %s", err, out))
		}
	}
	ns := fmt.Sprintf("membench-%d", os.Getpid())
	nsPath, err := benchkit.CreateNetns(ns)
	if err != nil {
		fail(fmt.Errorf("ip netns add %s: %v", ns, err))
	}
	const floorDesignName = "floor: the same, linking the design's packages"
	modes := []mode{
		{"floor: cilium/ebpf, one empty program, a 4 MiB ring", []string{floorEbpf}, "floor: attached"},
		{floorDesignName, []string{floorDesign}, "floor: attached"},
	}
	for _, c := range append([][2]string{{"sockscope", *sockscope}}, *compare...) {
		bin, err := benchkit.Executable(c[1])
		if err != nil {
			fail(err)
		}
		modes = append(modes,
			mode{c[0] + " trace", []string{bin, "trace", "--netns", nsPath, "--runtime-endpoint", "none"}, "sockscope: attached"},
			mode{c[0] + " syscalls", []string{bin, "syscalls", "--netns", nsPath, "--runtime-endpoint", "none", "--duration", "10m"}, "sockscope: attached"},
			mode{c[0] + " export", []string{bin, "export", "--netns", "bench=" + nsPath, "--runtime-endpoint", "none", "--web.listen-address", "127.0.0.1:0"}, "sockscope: exporting"})
	}
	load0 := benchkit.LoadAvg()
	got := make([][]mem, len(modes))
	for r := 0; r < *rounds; r++ {
		for k := range modes {
			i := (k + r) % len(modes)
			m, err := measure(modes[i], *settle)
			if err != nil {
				fail(fmt.Errorf("%s: %w", modes[i].name, err))
			}
			got[i] = append(got[i], m)
			fmt.Fprintf(os.Stderr, "membench: round %d %-52s RSS %.1f MB (anon %.1f, file %.1f), peak %.1f MB, attached in %.0f ms\n", r+1, modes[i].name,
				benchkit.RSSMB(m.rss), benchkit.RSSMB(m.anon), benchkit.RSSMB(m.file), benchkit.RSSMB(m.hwm), benchkit.Millis(m.attach))
		}
	}
	var w strings.Builder
	fmt.Fprintf(&w, "### Memory against the floor\n\nMeasured %s on Linux %s (load average at start: %s, at end: %s), %d rounds; each round starts every mode once, in an order rotated from round to round, and reads `/proc/PID/status` %s after it is attached (VmRSS and its anonymous and file-backed parts; the ring buffer's pages count as file-backed, twice, as they are mapped twice) and its peak, VmHWM; and the time from exec to its ready line (`attached`, or the exporter's `exporting`). Medians, and the range over the rounds; MB are 10^6 bytes.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), benchkit.Kernel(), load0, benchkit.LoadAvg(), *rounds, *settle)
	fmt.Fprintf(&w, "| mode | RSS MB (range) | anonymous | file-backed | peak MB (range) | RSS over the design floor | peak over it | attached ms (range) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	med := func(i int, f func(mem) float64) (float64, float64, float64) {
		var v []float64
		for _, m := range got[i] {
			v = append(v, f(m))
		}
		return benchkit.Median(v), slices.Min(v), slices.Max(v)
	}
	fi := slices.IndexFunc(modes, func(m mode) bool { return m.name == floorDesignName })
	rss := func(m mem) float64 { return benchkit.RSSMB(m.rss) }
	hwm := func(m mem) float64 { return benchkit.RSSMB(m.hwm) }
	floorRSS, _, _ := med(fi, rss)
	floorHWM, _, _ := med(fi, hwm)
	for i, m := range modes {
		r, rlo, rhi := med(i, rss)
		anon, _, _ := med(i, func(m mem) float64 { return benchkit.RSSMB(m.anon) })
		file, _, _ := med(i, func(m mem) float64 { return benchkit.RSSMB(m.file) })
		h, hlo, hhi := med(i, hwm)
		a, alo, ahi := med(i, func(m mem) float64 { return benchkit.Millis(m.attach) })
		fmt.Fprintf(&w, "| %s | %.1f (%.1f–%.1f) | %.1f | %.1f | %.1f (%.1f–%.1f) | %+.1f | %+.1f | %.0f (%.0f–%.0f) |\n",
			m.name, r, rlo, rhi, anon, file, h, hlo, hhi, r-floorRSS, h-floorHWM, a, alo, ahi)
	}
	if err := benchkit.Emit(w.String(), *out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "membench: %v\n", err)
	benchkit.RunCleanups()
	os.Exit(1)
}

// measure starts the mode, waits for its ready line and the settling time, reads its memory and
// stops it.
func measure(m mode, settle time.Duration) (mem, error) {
	cmd := exec.Command(m.argv[0], m.argv[1:]...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return mem{}, err
	}
	cmd.Stderr = pw
	p, err := benchkit.StartProc(filepath.Base(m.argv[0]), cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return mem{}, err
	}
	defer func() {
		p.Signal(syscall.SIGINT)
		if p.Wait(20*time.Second) != nil {
			p.Kill()
		}
		pr.Close()
	}()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		var tail benchkit.Tail
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), m.ready) {
				ready <- nil
				for sc.Scan() {
				}
				return
			}
			tail.Add(sc.Text())
		}
		ready <- fmt.Errorf("exited before %q: %s", m.ready, tail)
	}()
	select {
	case err := <-ready:
		if err != nil {
			return mem{}, err
		}
	case <-time.After(30 * time.Second):
		return mem{}, errors.New("not attached after 30 s")
	}
	attach := time.Since(p.Start)
	time.Sleep(settle)
	got, err := readMem(p.Pid())
	got.attach = attach
	return got, err
}

func readMem(pid int) (mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return mem{}, err
	}
	var m mem
	fields := map[string]*int64{"VmRSS:": &m.rss, "RssAnon:": &m.anon, "RssFile:": &m.file, "VmHWM:": &m.hwm}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && fields[f[0]] != nil {
			if *fields[f[0]], err = strconv.ParseInt(f[1], 10, 64); err != nil {
				return mem{}, fmt.Errorf("/proc/%d/status: %q", pid, line)
			}
		}
	}
	if m.rss == 0 || m.hwm == 0 {
		return mem{}, fmt.Errorf("/proc/%d/status has no VmRSS or VmHWM", pid)
	}
	return m, nil
}
