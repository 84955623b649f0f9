package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

// Binaries under test, built once by TestMain; extraBins are tools/NAME built into *path.
var (
	sockscopeBin string
	tcploadBin   string
	extraBins    = map[string]*string{}
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(prebuiltEnv); dir != "" {
		os.Exit(runPrebuilt(m, dir))
	}
	dir, err := os.MkdirTemp("", "sockscope-test-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sockscopeBin = filepath.Join(dir, "sockscope")
	tcploadBin = filepath.Join(dir, "tcpload")
	builds := map[string]string{sockscopeBin: ".", tcploadBin: "../../tools/load/tcpload"}
	for name, p := range extraBins {
		*p = filepath.Join(dir, name)
		builds[*p] = "../../tools/load/" + name
	}
	for bin, pkg := range builds {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static: also runs inside test containers
		out, err := cmd.CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// prebuiltEnv names a directory holding sockscope, tcpload and the extra tools, already built:
// a kernel-matrix guest (tools/kernels) has the test binary but no Go to build them with.
const prebuiltEnv = "SOCKSCOPE_TEST_BIN_DIR"

func runPrebuilt(m *testing.M, dir string) int {
	sockscopeBin = filepath.Join(dir, "sockscope")
	tcploadBin = filepath.Join(dir, "tcpload")
	bins := []string{sockscopeBin, tcploadBin}
	for name, p := range extraBins {
		*p = filepath.Join(dir, name)
		bins = append(bins, *p)
	}
	for _, bin := range bins {
		if _, err := os.Stat(bin); err != nil {
			fmt.Fprintf(os.Stderr, "%s=%s: %v\n", prebuiltEnv, dir, err)
			return 1
		}
	}
	return m.Run()
}

// jsonEvent is one line of `sockscope trace -o json`.
type jsonEvent struct {
	Time         string `json:"time"`
	Type         string `json:"type"`
	Container    string `json:"container"`
	ContainerID  string `json:"container_id"`
	K8sNamespace string `json:"k8s_namespace"`
	K8sPod       string `json:"k8s_pod"`
	Netns        uint32 `json:"netns"`
	Pid          int    `json:"pid"`
	Comm         string `json:"comm"`
	Family       string `json:"family"`
	Saddr        string `json:"saddr"`
	Sport        int    `json:"sport"`
	Daddr        string `json:"daddr"`
	Dport        int    `json:"dport"`
	OldState     string `json:"old_state"`
	NewState     string `json:"new_state"`
	PrevStateUs  int64  `json:"prev_state_us"`
	Errno        string `json:"errno"`
	LatencyUs    int64  `json:"latency_us"`
	LatencyNs    int64  `json:"latency_ns"`
}

func requireTracing(t *testing.T) {
	t.Helper()
	testenv.Root(t)
	testenv.BTF(t)
	testenv.Command(t, "ip")
}

// netns is a network namespace the test created, with only loopback, removed at cleanup.
type netns struct {
	name  string
	path  string
	inode uint32
}

func newNetns(t *testing.T) netns {
	t.Helper()
	ns := newNetnsWithoutLoopback(t)
	sh(t, "ip", "-n", ns.name, "link", "set", "lo", "up")
	return ns
}

// newNetnsWithoutLoopback leaves lo down, so that nothing in it has a route, not even 127.0.0.1.
// (Setting lo down after it was up keeps the local routes: connects then hang instead.)
func newNetnsWithoutLoopback(t *testing.T) netns {
	t.Helper()
	name := fmt.Sprintf("sockscope-test-%d-%d", os.Getpid(), rand.IntN(1<<30))
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	path := "/run/netns/" + name
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return netns{name: name, path: path, inode: uint32(st.Ino)}
}

// sysctl sets a per-netns sysctl inside ns.
func (ns netns) sysctl(t *testing.T, kv string) {
	t.Helper()
	sh(t, "ip", "netns", "exec", ns.name, "sysctl", "-q", "-w", kv)
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// loadResult is tcpload's final summary line.
type loadResult struct {
	Pid      int            `json:"pid"`
	OK       int            `json:"ok"`
	Errors   map[string]int `json:"errors"`
	Accepted int            `json:"accepted"`
	Slow     int            `json:"slow"` // connects that took 10 ms or more
}

// tcpload runs `tcpload ARGS...` inside ns to completion and returns its summary.
func (ns netns) tcpload(t *testing.T, args ...string) loadResult {
	t.Helper()
	out := sh(t, "ip", append([]string{"netns", "exec", ns.name, tcploadBin}, args...)...)
	var r loadResult
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("tcpload %v: %v in %q", args, err, out)
	}
	return r
}

// settle waits until ss, inside ns, shows no socket in a state that still has a transition
// coming (the orphaned LAST_ACK of an exited server can wait for the peer's last ACK), so the
// trace can be stopped with every transition in it. An orphaned FIN_WAIT2 already lives in the
// time-wait table (timer "timewait"): its full socket went to CLOSE, and nothing fires for it.
func (ns netns) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := sh(t, "ip", "netns", "exec", ns.name, "ss", "-Htano",
			"state", "syn-sent", "state", "syn-recv", "state", "fin-wait-1", "state", "fin-wait-2",
			"state", "last-ack", "state", "closing")
		var pending []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line != "" && !strings.Contains(line, "timer:(timewait") {
				pending = append(pending, line)
			}
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockets in netns %s did not settle within 10s:\n%s", ns.name, strings.Join(pending, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// server is a `tcpload serve` running in a netns.
type server struct {
	ns  netns
	cmd *exec.Cmd
	pid int
	out *bufio.Reader
}

func (ns netns) serve(t *testing.T, args ...string) *server {
	t.Helper()
	return ns.serveBin(t, tcploadBin, args...)
}

// serveBin is serve with tcpload at another path (a link with another name).
func (ns netns) serveBin(t *testing.T, bin string, args ...string) *server {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name, bin, "serve"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{ns: ns, cmd: cmd, out: bufio.NewReader(stdout)}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := s.out.ReadString('\n')
	if err != nil {
		t.Fatalf("tcpload serve %v did not get ready: %v", args, err)
	}
	var ready struct {
		Ready bool `json:"ready"`
		Pid   int  `json:"pid"`
	}
	if err := json.Unmarshal([]byte(line), &ready); err != nil || !ready.Ready {
		t.Fatalf("tcpload serve: unexpected first line %q", line)
	}
	s.pid = ready.Pid
	return s
}

// waitAccepted waits for the summary of a server started with -n n: it has accepted all n and
// closed them. Stopped before that, it would reset the connections still in its accept queue.
// A connection whose last handshake segment a full accept queue dropped arrives with the
// server's SYN-ACK retransmissions (1 + 2 + 4 + 8 + 16 + 32 s at most): two minutes is plenty,
// and a test fails there instead of hanging until the suite's timeout.
func (s *server) waitAccepted(t *testing.T, n int) {
	t.Helper()
	type result struct {
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		line, err := s.out.ReadString('\n')
		got <- result{line, err}
	}()
	select {
	case r := <-got:
		if r.err != nil || !strings.Contains(r.line, fmt.Sprintf(`"accepted":%d`, n)) {
			t.Fatalf("tcpload serve -n %d: %q, %v", n, r.line, r.err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("tcpload serve -n %d: not all accepted after 2 minutes", n)
	}
}

// stop ends the server with SIGTERM, waits for it, and for its netns to settle.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.halt()
	s.ns.settle(t)
}

// halt ends the server with SIGTERM and waits for it to exit.
func (s *server) halt() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	io.Copy(io.Discard, s.out)
	s.cmd.Wait()
}

// tracer is a running `sockscope trace -o json`.
type tracer struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr *bufio.Reader
	errBuf bytes.Buffer
	done   chan struct{}
}

// startTrace starts sockscope with args plus `-o json` and waits for its "attached" line.
func startTrace(t *testing.T, args ...string) *tracer {
	t.Helper()
	return startTraceTo(t, nil, args...)
}

// startTraceTo is startTrace with stdout also going to w, when not nil (wrapping tr.stdout), so
// that a test can read the output before the trace stops.
func startTraceTo(t *testing.T, w func(*bytes.Buffer) io.Writer, args ...string) *tracer {
	t.Helper()
	return startAttached(t, w, append([]string{"trace", "-o", "json"}, args...)...)
}

// startAttached starts `sockscope ARGS...` and waits for its "sockscope: attached" line.
func startAttached(t *testing.T, w func(*bytes.Buffer) io.Writer, args ...string) *tracer {
	t.Helper()
	return startAttachedWith(t, w, nil, args...)
}

// startAttachedEnv is startAttached with more environment variables (NAME=VALUE).
func startAttachedEnv(t *testing.T, env []string, args ...string) *tracer {
	t.Helper()
	return startAttachedWith(t, nil, env, args...)
}

func startAttachedWith(t *testing.T, w func(*bytes.Buffer) io.Writer, env []string, args ...string) *tracer {
	t.Helper()
	tr := &tracer{cmd: exec.Command(sockscopeBin, args...), done: make(chan struct{})}
	if env != nil {
		tr.cmd.Env = append(os.Environ(), env...)
	}
	tr.cmd.Stdout = &tr.stdout
	if w != nil {
		tr.cmd.Stdout = w(&tr.stdout)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	tr.cmd.Stderr = pw
	start := time.Now()
	if err := tr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() {
		if tr.cmd.ProcessState == nil {
			tr.cmd.Process.Kill()
			tr.cmd.Wait()
		}
	})
	attached := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		ok := false
		for sc.Scan() {
			line := sc.Text()
			tr.errBuf.WriteString(line + "\n")
			if !ok && strings.HasPrefix(line, "sockscope: attached") {
				ok = true
				attached <- nil
			}
		}
		if !ok {
			attached <- fmt.Errorf("exited before attaching")
		}
		close(tr.done)
	}()
	select {
	case err := <-attached:
		if err != nil {
			tr.cmd.Wait()
			<-tr.done
			t.Fatalf("sockscope %v: %v; stderr:\n%s", args, err, tr.errBuf.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("sockscope %v did not attach within 20s; stderr:\n%s", args, tr.errBuf.String())
	}
	t.Logf("sockscope %q attached in %v", args, time.Since(start).Round(time.Millisecond))
	return tr
}

// running reports whether the process has not exited yet.
func (tr *tracer) running() bool {
	select {
	case <-tr.done:
		return false
	default:
		return true
	}
}

// wait waits for the process to end by itself and returns how: stderr without its "attached"
// line, so that a failure reads as from runSockscope.
func (tr *tracer) wait(t *testing.T) cliResult {
	t.Helper()
	tr.cmd.Wait()
	<-tr.done
	var rest []string
	for _, l := range lines(tr.errBuf.String()) {
		if !strings.HasPrefix(l, "sockscope: attached") {
			rest = append(rest, l)
		}
	}
	stderr := strings.Join(rest, "\n")
	if stderr != "" {
		stderr += "\n"
	}
	return cliResult{stdout: tr.stdout.String(), stderr: stderr, code: tr.cmd.ProcessState.ExitCode()}
}

// interrupt sends SIGINT and waits for a clean exit; it returns stdout and stderr.
func (tr *tracer) interrupt(t *testing.T) (string, string) {
	t.Helper()
	tr.cmd.Process.Signal(syscall.SIGINT)
	err := tr.cmd.Wait()
	<-tr.done
	if err != nil {
		t.Fatalf("sockscope exited with %v; stderr:\n%s", err, tr.errBuf.String())
	}
	return tr.stdout.String(), tr.errBuf.String()
}

// stop sends SIGINT, waits for a clean exit, and returns the parsed events and stderr.
func (tr *tracer) stop(t *testing.T) ([]jsonEvent, string) {
	t.Helper()
	stdout, stderr := tr.interrupt(t)
	if !strings.Contains(stderr, " 0 lost") {
		t.Errorf("sockscope reported lost events:\n%s", stderr)
	}
	return jsonLines[jsonEvent](t, stdout), stderr
}

// jsonLines decodes output of -o json: one object per line.
func jsonLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var vs []T
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		vs = append(vs, v)
	}
	return vs
}

// transitions counts state events as "OLD->NEW".
func transitions(evs []jsonEvent, keep func(jsonEvent) bool) map[string]int {
	m := map[string]int{}
	for _, e := range evs {
		if e.Type == "state" && (keep == nil || keep(e)) {
			m[e.OldState+"->"+e.NewState]++
		}
	}
	return m
}

// connects counts connect events by errno ("" = success).
func connects(evs []jsonEvent, keep func(jsonEvent) bool) map[string]int {
	m := map[string]int{}
	for _, e := range evs {
		if e.Type == "connect" && (keep == nil || keep(e)) {
			m[e.Errno]++
		}
	}
	return m
}

func assertCounts(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	for k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s %q: got %d, want %d (all: got %v, want %v)", what, k, got[k], want[k], got, want)
		}
	}
}

// lockedBuffer is a buffer a running process writes into while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func newLockedBuffer() *lockedBuffer { return &lockedBuffer{buf: &bytes.Buffer{}} }

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string { return string(l.bytes()) }

// bytes returns a copy of what was written so far.
func (l *lockedBuffer) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.buf.Bytes())
}
