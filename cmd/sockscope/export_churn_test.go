package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

// sockscopeSeries counts the exposition's sockscope_ samples.
func sockscopeSeries(exposition string) int {
	n := 0
	for _, line := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(line, "sockscope_") {
			n++
		}
	}
	return n
}

// 1,000 containers start, make TCP connections and go: the kernel maps and the series return to
// where they started. Each container connects to itself after a pause, so that sockscope has
// counted it (the test checks it saw counts from churn containers: it would fail if nothing
// was ever counted).
func TestExportChurnLeavesMapsAndSeriesWhereTheyStarted(t *testing.T) {
	requireDocker(t)
	cycles := 1000
	if testing.Short() {
		cycles = 50
	}
	exp := startExport(t, "--host=false")
	time.Sleep(time.Second) // the first sync
	base := exp.metrics(t)
	counters := value(base, `sockscope_bpf_map_entries{map="counters"}`)
	tracked := value(base, `sockscope_bpf_map_entries{map="tracked"}`)
	series := sockscopeSeries(base)

	prefix := containerName("churn")
	var next, failed atomic.Int64
	var sawCounted atomic.Bool
	var maxTracked atomic.Int64
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() { // samples the exporter while the churn runs
		defer watch.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			m := exp.metrics(t)
			if v := int64(value(m, `sockscope_bpf_map_entries{map="tracked"}`)); v > maxTracked.Load() {
				maxTracked.Store(v)
			}
			for _, line := range strings.Split(m, "\n") {
				if strings.HasPrefix(line, `sockscope_tcp_connects_total{container="`+prefix) && strings.Contains(line, `result="success"`) &&
					!strings.HasSuffix(line, " 0") {
					sawCounted.Store(true)
				}
			}
		}
	}()
	script := "httpd -p 127.0.0.1:8080 -h /www; sleep 0.5; wget -q -O- http://127.0.0.1:8080/ >/dev/null"
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(cycles) {
					return
				}
				name := fmt.Sprintf("%s-%d", prefix, i)
				out, err := exec.Command("docker", "run", "--rm", "--name", name, testImage, "sh", "-c", script).CombinedOutput()
				if err != nil {
					if failed.Add(1) == 1 {
						t.Errorf("docker run %s: %v\n%s", name, err, out)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d cycles failed", failed.Load(), cycles)
	}
	if !sawCounted.Load() || maxTracked.Load() <= int64(tracked) {
		t.Fatalf("the churn was never seen: counted %v, most tracked namespaces %d (base %v)", sawCounted.Load(), maxTracked.Load(), tracked)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := exp.metrics(t)
		got := [3]float64{value(m, `sockscope_bpf_map_entries{map="counters"}`), value(m, `sockscope_bpf_map_entries{map="tracked"}`), float64(sockscopeSeries(m))}
		if got == [3]float64{counters, tracked, float64(series)} && value(m, `sockscope_bpf_map_entries{map="handshakes"}`) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d cycles: counters %v tracked %v series %v; before: %v %v %v", cycles, got[0], got[1], got[2], counters, tracked, series)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d cycles; at most %d namespaces tracked at once", cycles, maxTracked.Load())
	exp.stop(t)
}

// A Docker daemon restart: metrics keep flowing while it is down (runtime_up 0, errors counted);
// sockscope reconnects by itself and names a container started after the restart. This stops the
// machine's real dockerd, so it runs only in CI or when SOCKSCOPE_TEST_DOCKER_RESTART=1.
func TestExportSurvivesADockerDaemonRestart(t *testing.T) {
	requireDocker(t)
	if !testenv.InCI() && os.Getenv("SOCKSCOPE_TEST_DOCKER_RESTART") != "1" {
		t.Skip("skipped: restarts the machine's Docker daemon; set SOCKSCOPE_TEST_DOCKER_RESTART=1 to run it")
	}
	pidText, err := os.ReadFile("/var/run/docker.pid")
	if err != nil {
		t.Fatalf("find dockerd: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	rawArgs, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatalf("dockerd's command line: %v", err)
	}
	args := strings.Split(strings.TrimRight(string(rawArgs), "\x00"), "\x00")
	exp := startExport(t, "--host=false", "--docker-host", "unix:///var/run/docker.sock")
	time.Sleep(time.Second)
	const up = `sockscope_runtime_up{endpoint="unix:///var/run/docker.sock",runtime="docker"}`
	const errs = `sockscope_runtime_errors_total{endpoint="unix:///var/run/docker.sock",runtime="docker"}`
	if v := value(exp.metrics(t), up); v != 1 {
		t.Fatalf("%s = %v before the restart", up, v)
	}

	restarted := false
	restart := func() {
		if restarted {
			return
		}
		restarted = true
		log, _ := os.Create("/tmp/dockerd-restart.log")
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("restart dockerd: %v", err)
		}
		go cmd.Wait()
		deadline := time.Now().Add(60 * time.Second)
		for exec.Command("docker", "version").Run() != nil {
			if time.Now().After(deadline) {
				t.Fatal("dockerd did not answer within 60 s of its restart; see /tmp/dockerd-restart.log")
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	t.Cleanup(restart) // whatever happens, leave a daemon running
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("dockerd did not exit within 30 s of SIGTERM")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Down: still serving, and saying so.
	deadline = time.Now().Add(10 * time.Second)
	for {
		m := exp.metrics(t)
		if value(m, up) == 0 && value(m, errs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with dockerd down: runtime_up %v, errors %v", value(m, up), value(m, errs))
		}
		time.Sleep(100 * time.Millisecond)
	}
	restart()
	c := runHTTPD(t, "after-restart")
	deadline = time.Now().Add(40 * time.Second) // the backoff may have reached 16 s
	for {
		m := exp.metrics(t)
		if value(m, up) == 1 && strings.Contains(m, fmt.Sprintf("sockscope_container_info{compose_project=\"\",compose_service=\"\",container=%q", c.name)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("40 s after dockerd came back: runtime_up %v, %s not named; stderr:\n%s", value(m, up), c.name, exp.stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	exp.stop(t)
}

// --syscalls: the DTrace incident's counts, per container, exact; and bounded: with --syscalls.top 2
// the two hottest calls keep series of their own and the rest add up, exactly, in "other".
func TestExportSyscallsCountExactlyWhatANetnsDid(t *testing.T) {
	requireTracing(t)
	ns := newNetns(t)
	all := startExport(t, noDocker, "--host=false", "--netns", "t="+ns.path, "--syscalls", "--syscalls.top", "100")
	top2 := startExport(t, noDocker, "--host=false", "--netns", "t="+ns.path, "--syscalls", "--syscalls.top", "2")
	dir := t.TempDir()
	sh(t, "ip", "netns", "exec", ns.name, sysloadBin, "-dir", dir, "-fsync", "1000", "-unlink", "300", "-emfile", "7")
	m := all.metrics(t)
	if v := value(m, `sockscope_syscalls_total{container="t",namespace="",pod="",syscall="fsync"}`); v != 1000 {
		t.Errorf("fsync = %v, want 1000", v)
	}
	if v := value(m, `sockscope_syscalls_total{container="t",namespace="",pod="",syscall="unlinkat"}`); v != 300 {
		t.Errorf("unlinkat = %v, want 300", v)
	}
	if v := value(m, `sockscope_syscall_errors_total{container="t",errno="EMFILE",namespace="",pod="",syscall="openat"}`); v != 7 {
		t.Errorf("openat EMFILE = %v, want 7", v)
	}
	series := func(m string) map[string]float64 {
		out := map[string]float64{}
		for _, line := range strings.Split(m, "\n") {
			if rest, ok := strings.CutPrefix(line, `sockscope_syscalls_total{container="t",namespace="",pod="",syscall="`); ok {
				name, v, _ := strings.Cut(rest, `"} `)
				out[name], _ = strconv.ParseFloat(v, 64)
			}
		}
		return out
	}
	// (Each exporter enters the netns at its scrapes, which the other counts: the two can't be
	// compared call for call. exporter/syscalls_test.go checks the bounding arithmetic exactly.)
	full, bounded := series(m), series(top2.metrics(t))
	if full["other"] != 0 || len(full) < 5 {
		t.Fatalf("--syscalls.top 100: %v", full)
	}
	if len(bounded) != 3 || bounded["other"] == 0 {
		t.Errorf("--syscalls.top 2: %v; want two named series and other", bounded)
	}
	all.stop(t)
	top2.stop(t)
}
