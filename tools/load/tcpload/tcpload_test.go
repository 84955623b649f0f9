package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in     string
		family int
		port   int
	}{
		{"127.0.0.1:80", unix.AF_INET, 80},
		{"[::1]:8080", unix.AF_INET6, 8080},
		{"[::ffff:127.0.0.1]:1", unix.AF_INET6, 1},
	} {
		sa, family, _, err := parseAddr(tc.in)
		if err != nil || family != tc.family {
			t.Errorf("%s: family %d err %v", tc.in, family, err)
			continue
		}
		var port int
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			port = sa.Port
		case *unix.SockaddrInet6:
			port = sa.Port
		}
		if port != tc.port {
			t.Errorf("%s: port %d", tc.in, port)
		}
	}
	for _, bad := range []string{"localhost:80", "127.0.0.1", "[fe80::1%lo]:80", ":80"} {
		if _, _, _, err := parseAddr(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestErrnoName(t *testing.T) {
	if n := errnoName(unix.ECONNREFUSED); n != "ECONNREFUSED" {
		t.Errorf("got %q", n)
	}
	if n := errnoName(fmt.Errorf("wrapped: %w", unix.EADDRNOTAVAIL)); n != "EADDRNOTAVAIL" {
		t.Errorf("got %q", n)
	}
}

// The tests below run the binary inside network namespaces of their own.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func tcploadBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tcpload-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tcpload")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

var nsSeq struct {
	sync.Mutex
	n int
}

// newNetns creates a network namespace for one test; lo is brought up unless loDown.
func newNetns(t *testing.T, loDown bool) string {
	t.Helper()
	testenv.Root(t)
	testenv.Command(t, "ip")
	nsSeq.Lock()
	nsSeq.n++
	name := fmt.Sprintf("tcpload-test-%d-%d", os.Getpid(), nsSeq.n)
	nsSeq.Unlock()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if !loDown {
		if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("lo up: %v %s", err, out)
		}
	}
	return name
}

// runIn runs tcpload ARGS in ns to completion and decodes its last stdout line into v.
func runIn(t *testing.T, ns string, v any, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, tcploadBin(t)}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	timer := time.AfterFunc(60*time.Second, func() {
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tcpload %v: %v; stderr %q", args, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		t.Fatalf("tcpload %v: %v in %q", args, err, out)
	}
}

// startIn starts tcpload ARGS in ns and returns it with its first stdout line decoded into v.
func startIn(t *testing.T, ns string, v any, args ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, tcploadBin(t)}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(stdout)
	line := make(chan string, 1)
	go func() {
		l, _ := r.ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if err := json.Unmarshal([]byte(l), v); err != nil {
			t.Fatalf("tcpload %v: first line %q: %v", args, l, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("tcpload %v: no first line within 30s", args)
	}
	return cmd, r
}

// finish sends SIGTERM and decodes the final line into v.
func finish(t *testing.T, cmd *exec.Cmd, r *bufio.Reader, v any) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	var last string
	for {
		l, err := r.ReadString('\n')
		if strings.TrimSpace(l) != "" {
			last = l
		}
		if err != nil {
			break
		}
	}
	cmd.Wait()
	if err := json.Unmarshal([]byte(last), v); err != nil {
		t.Fatalf("final line %q: %v", last, err)
	}
}

type connectOut struct {
	PID       int            `json:"pid"`
	OK        int            `json:"ok"`
	Errors    map[string]int `json:"errors"`
	EOFErrors map[string]int `json:"eof_errors"`
}

type readyOut struct {
	Ready bool   `json:"ready"`
	PID   int    `json:"pid"`
	Addr  string `json:"addr"`
}

func TestConnectRefused(t *testing.T) {
	ns := newNetns(t, false)
	for _, nb := range []bool{false, true} {
		args := []string{"connect", "-addr", "127.0.0.1:9", "-n", "7"}
		if nb {
			args = append(args, "-nonblock")
		}
		var out connectOut
		runIn(t, ns, &out, args...)
		if out.OK != 0 || out.Errors["ECONNREFUSED"] != 7 || len(out.Errors) != 1 || out.PID == 0 {
			t.Errorf("nonblock=%v: %+v", nb, out)
		}
	}
}

func TestConnectWithoutRoute(t *testing.T) {
	ns := newNetns(t, true) // lo never brought up: no route to 127.0.0.1 at all
	var out connectOut
	runIn(t, ns, &out, "connect", "-addr", "127.0.0.1:9", "-n", "3")
	if out.Errors["ENETUNREACH"] != 3 {
		t.Errorf("%+v", out)
	}
}

func TestServeAndConnect(t *testing.T) {
	ns := newNetns(t, false)
	for _, tc := range []struct {
		addr       string
		serveArgs  []string
		clientArgs []string
	}{
		{"127.0.0.1:7001", nil, nil},
		{"[::1]:7002", nil, []string{"-nonblock"}},
		{"127.0.0.1:7003", []string{"-close-first"}, []string{"-close-first=server"}},
		{"[::1]:7004", []string{"-close-first"}, []string{"-close-first=server", "-nonblock"}},
	} {
		const n = 20
		var ready readyOut
		srv, sr := startIn(t, ns, &ready, append([]string{"serve", "-addr", tc.addr, "-n", fmt.Sprint(n)}, tc.serveArgs...)...)
		if !ready.Ready || ready.PID == 0 || ready.Addr != tc.addr {
			t.Fatalf("%s: ready line %+v", tc.addr, ready)
		}
		var out connectOut
		runIn(t, ns, &out, append([]string{"connect", "-addr", tc.addr, "-n", fmt.Sprint(n)}, tc.clientArgs...)...)
		if out.OK != n || len(out.Errors) != 0 || len(out.EOFErrors) != 0 {
			t.Errorf("%s %v: %+v", tc.addr, tc.clientArgs, out)
		}
		var sum struct{ Accepted int }
		finish(t, srv, sr, &sum) // -n makes it exit by itself; SIGTERM is harmless
		if sum.Accepted != n {
			t.Errorf("%s: accepted %d", tc.addr, sum.Accepted)
		}
	}
}

// -hold keeps the sockets: ESTABLISHED by default, CLOSE_WAIT after the server closed first.
func TestConnectHold(t *testing.T) {
	testenv.Command(t, "ss")
	ns := newNetns(t, false)
	var ready readyOut
	startIn(t, ns, &ready, "serve", "-addr", "127.0.0.1:7010")
	startIn(t, ns, &ready, "serve", "-addr", "127.0.0.1:7011", "-close-first")
	for _, tc := range []struct {
		port  string
		args  []string
		state string
	}{
		{"7010", nil, "established"},
		{"7011", []string{"-close-first=server"}, "close-wait"},
	} {
		var holding struct{ Holding, PID int }
		cmd, r := startIn(t, ns, &holding, append([]string{"connect", "-addr", "127.0.0.1:" + tc.port, "-n", "5", "-hold"}, tc.args...)...)
		if holding.Holding != 5 {
			t.Fatalf("holding line %+v", holding)
		}
		out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-Htan", "state", tc.state, "dport", tc.port).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := len(strings.Split(strings.TrimSpace(string(out)), "\n")); got != 5 {
			t.Errorf("%v: %d sockets in %s, want 5:\n%s", tc.args, got, tc.state, out)
		}
		var sum connectOut
		finish(t, cmd, r, &sum)
		if sum.OK != 5 {
			t.Errorf("%+v", sum)
		}
	}
}

func TestStorm(t *testing.T) {
	ns := newNetns(t, false)
	var out struct {
		Connections int64            `json:"connections"`
		Seconds     float64          `json:"seconds"`
		PerSecond   float64          `json:"per_second"`
		Total       int64            `json:"total"`
		Errors      map[string]int64 `json:"errors"`
	}
	runIn(t, ns, &out, "storm", "-port", "7020", "-duration", "500ms", "-warmup", "200ms")
	if out.Connections < 100 || out.Total < out.Connections || len(out.Errors) != 0 || out.Seconds < 0.5 || out.PerSecond <= 0 {
		t.Errorf("%+v", out)
	}
}
