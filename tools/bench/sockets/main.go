// Command sockbench measures `sockscope sockets` against ss and netstat in a network namespace
// holding N TIME_WAIT sockets (30,000 and 80,000 by default): the wall time of each command
// (median of -runs) and its output lines, in one run. `make bench` runs it. (No peak RSS: on
// exec the kernel carries the parent's high-water mark into the child's, so rusage cannot tell.)
//
// It needs root. TIME_WAIT lasts 60 s, so each size is built afresh and measured at once.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

func main() {
	sockscope := flag.String("sockscope", "bin/sockscope", "sockscope binary")
	tcpload := flag.String("tcpload", "bin/tcpload", "tcpload binary")
	sizes := flag.String("sizes", "30000,80000", "TIME_WAIT sockets to build, comma-separated")
	runs := flag.Int("runs", 5, "runs of each command (the median is reported)")
	out := flag.String("out", "", "also write the markdown report here")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail(errors.New("needs root (network namespaces, BPF)"))
	}
	var w strings.Builder
	fmt.Fprintf(&w, "### `sockscope sockets` benchmark\n\nMeasured %s on Linux %s, %d CPUs. Each command runs %d times against a fresh network namespace holding N TIME_WAIT sockets (clients close first, to 127.0.0.1 on several ports); the median wall time is reported, with the ratio to `ss -tan` measured in the same run. `ss` and `netstat` run through `ip netns exec`, sockscope enters the namespace itself.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), benchkit.Kernel(), runtime.NumCPU(), *runs)
	fmt.Fprintf(&w, "| TIME_WAIT | command | median | vs ss -tan | lines | target |\n|---:|---|---:|---:|---:|---|\n")
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fail(fmt.Errorf("bad -sizes entry %q", f))
		}
		if err := measure(&w, *sockscope, *tcpload, n, *runs); err != nil {
			fail(err)
		}
	}
	if err := benchkit.Emit(w.String(), *out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "sockbench: %v\n", err)
	os.Exit(1)
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// timed runs argv with its stdout collected.
func timed(argv []string) (time.Duration, []byte, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, nil, err
	}
	defer pr.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		return 0, nil, err
	}
	pw.Close()
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(pr)
		done <- b
	}()
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(cmd.Process.Pid, &ws, 0, nil); err != nil {
		return 0, nil, err
	}
	d := time.Since(start)
	output := <-done
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return 0, nil, fmt.Errorf("%v: %v", argv, ws)
	}
	return d, output, nil
}

// measure builds a namespace with n TIME_WAIT sockets and times the commands in it.
func measure(w *strings.Builder, sockscope, tcpload string, n, runs int) error {
	ns := fmt.Sprintf("sockbench-%d-%d", os.Getpid(), n)
	if err := run("ip", "netns", "add", ns); err != nil {
		return err
	}
	defer exec.Command("ip", "netns", "delete", ns).Run()
	for _, args := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 65000", "net.ipv4.tcp_tw_reuse=0", "net.ipv4.tcp_max_tw_buckets=400000"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	// Several upstreams keep the kernel's free-port search short; the kernel drops a few
	// time-wait sockets of its own accord, so build 2% more than asked.
	const perPort = 20000
	left := n + n/50
	for port := 8080; left > 0; port++ {
		k := min(left, perPort)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		srv := exec.Command("ip", "netns", "exec", ns, tcpload, "serve", "-addr", addr)
		so, _ := srv.StdoutPipe()
		if err := srv.Start(); err != nil {
			return err
		}
		bufio.NewReader(so).ReadString('\n')
		err := run("ip", "netns", "exec", ns, tcpload, "connect", "-addr", addr, "-n", strconv.Itoa(k))
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
		if err != nil {
			return err
		}
		left -= k
	}
	time.Sleep(200 * time.Millisecond) // the last FINs
	path := "/run/netns/" + ns
	cmds := []struct {
		label, target string
		argv          []string
	}{
		{"`ss -tan`", "", []string{"ip", "netns", "exec", ns, "ss", "-tan"}},
		{"`netstat -tan`", "", []string{"ip", "netns", "exec", ns, "netstat", "-tan"}},
		{"`sockscope sockets --summary`", "≤ 0.5x ss", []string{sockscope, "sockets", "--netns", path, "--summary"}},
		{"`sockscope sockets -o json`", "≤ 1x ss", []string{sockscope, "sockets", "--netns", path, "-o", "json"}},
		{"`sockscope sockets` (table)", "", []string{sockscope, "sockets", "--netns", path}},
	}
	var ssMedian time.Duration
	tw := 0
	for i, c := range cmds {
		var times []time.Duration
		var lines int
		for r := 0; r < runs; r++ {
			d, output, err := timed(c.argv)
			if err != nil {
				return err
			}
			times = append(times, d)
			lines = bytes.Count(output, []byte("\n"))
			if i == 0 && r == 0 {
				tw = bytes.Count(output, []byte("TIME-WAIT"))
			}
		}
		slices.Sort(times)
		med := times[len(times)/2]
		if i == 0 {
			ssMedian = med
		}
		fmt.Fprintf(w, "| %d | %s | %.1f ms | %.2fx | %d | %s |\n", tw, c.label,
			float64(med.Microseconds())/1000, float64(med)/float64(ssMedian), lines, c.target)
	}
	// The counts must agree: sockscope's summary against ss.
	out, err := exec.Command(sockscope, "sockets", "--netns", path, "--summary", "-o", "json").Output()
	if err != nil {
		return err
	}
	var sum struct {
		States map[string]int `json:"states"`
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		return err
	}
	if sum.States["TIME_WAIT"] < tw-50 || sum.States["TIME_WAIT"] > tw+50 {
		return fmt.Errorf("sockscope counts %d TIME_WAIT, ss %d", sum.States["TIME_WAIT"], tw)
	}
	return nil
}
