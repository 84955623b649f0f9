package main

// End-to-end tests of the command line: bad input and faults end with one clear line on stderr
// and the documented exit status, never a panic; signals, --duration, --count and a closed
// output pipe end the trace cleanly.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

// cliResult is how one run of the binary ended.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCmd runs cmd to completion (killing it after timeout) and returns its output and exit status.
func runCmd(t *testing.T, timeout time.Duration, cmd *exec.Cmd) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(timeout, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	if !timer.Stop() {
		t.Fatalf("%v did not end within %v; stderr:\n%s", cmd.Args, timeout, stderr.String())
	}
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%v: %v; stderr:\n%s", cmd.Args, err, r.stderr)
	}
	return r
}

func runSockscope(t *testing.T, args ...string) cliResult {
	t.Helper()
	return runCmd(t, 30*time.Second, exec.Command(sockscopeBin, args...))
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func assertNoPanic(t *testing.T, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Errorf("stderr shows a panic or a stack trace:\n%s", stderr)
	}
}

// assertUsageError checks exit status 2, nothing on stdout, and on stderr exactly the message
// line (containing each of want) followed by the hint to --help.
func assertUsageError(t *testing.T, r cliResult, cmd string, want ...string) {
	t.Helper()
	assertNoPanic(t, r.stderr)
	if r.code != 2 {
		t.Errorf("exit status %d, want 2; stderr:\n%s", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout should be empty, got:\n%s", r.stdout)
	}
	ls := lines(r.stderr)
	if len(ls) != 2 {
		t.Fatalf("stderr has %d lines, want the message and the hint:\n%s", len(ls), r.stderr)
	}
	if !strings.HasPrefix(ls[0], cmd+": ") {
		t.Errorf("message %q does not start with %q", ls[0], cmd+": ")
	}
	for _, w := range want {
		if !strings.Contains(ls[0], w) {
			t.Errorf("message %q does not contain %q", ls[0], w)
		}
	}
	if hint := "Run '" + cmd + " --help' for usage."; ls[1] != hint {
		t.Errorf("hint %q, want %q", ls[1], hint)
	}
}

// assertFailure checks exit status 1, nothing on stdout, and exactly one line on stderr,
// "sockscope: ...", containing each of want.
func assertFailure(t *testing.T, r cliResult, want ...string) {
	t.Helper()
	assertNoPanic(t, r.stderr)
	if r.code != 1 {
		t.Errorf("exit status %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout should be empty, got:\n%s", r.stdout)
	}
	ls := lines(r.stderr)
	if len(ls) != 1 || !strings.HasPrefix(ls[0], "sockscope: ") {
		t.Fatalf("stderr should be one line \"sockscope: ...\", got:\n%s", r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(ls[0], w) {
			t.Errorf("message %q does not contain %q", ls[0], w)
		}
	}
}

func TestBadCommandLinesExitWithStatus2AndAUsageHint(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"trace", "--family", "5"}, []string{"--family", "4 or 6", "5"}},
		{[]string{"trace", "--port", "0"}, []string{"--port", "between 1 and 65535", "0"}},
		{[]string{"trace", "--port", "70000"}, []string{"--port", "between 1 and 65535", "70000"}},
		{[]string{"trace", "-o", "xml"}, []string{"--output", "table or json", "xml"}},
		{[]string{"trace", "--state", "FOO"}, []string{"FOO", "CLOSE", "CLOSE_WAIT", "CLOSING", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "LAST_ACK", "LISTEN", "SYN_RECV", "SYN_SENT", "TIME_WAIT"}},
		{[]string{"trace", "--count", "-1"}, []string{"--count", "-1"}},
		{[]string{"trace", "--pid", "-1"}, []string{"--pid", "-1"}},
		{[]string{"trace", "--comm", ""}, []string{"--comm", "needs a process name"}},
		{[]string{"trace", "--comm", "a-very-long-process-name"}, []string{"--comm", "15 bytes", `"a-very-long-pro"`}},
		{[]string{"trace", "--comm=a", "--comm=b", "--comm=c", "--comm=d", "--comm=e", "--comm=f", "--comm=g", "--comm=h", "--comm=i"}, []string{"--comm", "9 times", "at most 8"}},
		{[]string{"syscalls", "--comm", ""}, []string{"--comm", "needs a process name"}},
		{[]string{"trace", "--duration", "-1s"}, []string{"--duration", "-1s"}},
		{[]string{"trace", "--duration", "soon"}, []string{"--duration", "soon"}},
		{[]string{"trace", "--bogus"}, []string{"unknown flag", "--bogus"}},
		{[]string{"trace", "web"}, []string{`"web"`, "--container"}},
		{[]string{"bogus"}, []string{`unknown command "bogus"`}},
		{[]string{"sockets", "-o", "xml"}, []string{"--output", "table or json", "xml"}},
		{[]string{"sockets", "--state", "FOO"}, []string{"FOO", "TIME_WAIT"}},
		{[]string{"sockets", "--port", "0"}, []string{"--port", "between 1 and 65535"}},
		{[]string{"sockets", "--top", "0"}, []string{"--top", "at least 1"}},
		{[]string{"sockets", "--all", "-c", "web"}, []string{"--all", "--container"}},
		{[]string{"sockets", "web"}, []string{`"web"`, "--container"}},
		{[]string{"syscalls", "--syscall", "opne"}, []string{`"opne"`, "not a syscall", "open"}},
		{[]string{"syscalls", "--by", "host"}, []string{`"host"`, "container,comm,pid,syscall"}},
		{[]string{"syscalls", "--top", "0"}, []string{"--top", "at least 1"}},
		{[]string{"syscalls", "-o", "csv"}, []string{"--output", "table, json or folded", "csv"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := "sockscope"
			if tc.args[0] == "trace" || tc.args[0] == "sockets" || tc.args[0] == "syscalls" {
				cmd = "sockscope " + tc.args[0]
			}
			assertUsageError(t, runSockscope(t, tc.args...), cmd, tc.want...)
		})
	}
}

func TestNoArgumentsPrintsUsageAndExitsWithStatus2(t *testing.T) {
	r := runSockscope(t)
	assertNoPanic(t, r.stderr)
	if r.code != 2 {
		t.Errorf("exit status %d, want 2", r.code)
	}
	if r.stdout != "" || !strings.Contains(r.stderr, "Usage:") || !strings.Contains(r.stderr, "sockscope trace") {
		t.Errorf("want the usage on stderr only; stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
}

func TestTraceHelpListsTheFlags(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		r := runSockscope(t, "trace", arg)
		assertNoPanic(t, r.stderr)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("trace %s: exit status %d, stderr %q; want 0 and nothing", arg, r.code, r.stderr)
		}
		for _, flag := range []string{"--container", "--pid", "--netns", "--port", "--family", "--state",
			"--connect-errors", "--output", "--duration", "--count", "--docker-host", "--help"} {
			if !strings.Contains(r.stdout, flag+" ") {
				t.Errorf("trace %s does not list %s:\n%s", arg, flag, r.stdout)
			}
		}
	}
}

func TestWithoutPrivilegesTheMissingCapabilitiesAreNamed(t *testing.T) {
	testenv.Root(t) // to become someone else
	testenv.BTF(t)  // checked first
	// The test binary's directory is private to root: copy it where nobody can run it.
	dir, err := os.MkdirTemp("", "sockscope-test-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(sockscopeBin)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "sockscope")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "trace")
	cmd.Dir = "/"
	// Changing from uid 0 to another clears the capabilities at execve.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	assertFailure(t, runCmd(t, 30*time.Second, cmd), "CAP_BPF", "CAP_PERFMON")
}

func TestUnknownContainerSuggestsTheClosestRunningNames(t *testing.T) {
	requireDocker(t)
	web := newContainer(t, []string{"run", "-d"}, containerName("web"), testImage, "sleep", "3600")
	typo := strings.Replace(web.name, "-web-", "-wbe-", 1)
	r := runSockscope(t, "trace", "--container", typo)
	assertFailure(t, r, strconv.Quote(typo), "closest", web.name)
}

// A runtime the user named must answer, in every command: one line naming the socket, exit 1.
func TestANamedRuntimeThatDoesNotAnswerFails(t *testing.T) {
	requireTracing(t)
	for _, args := range [][]string{
		{"trace", "--container", "x", "--docker-host", "unix:///nonexistent/docker.sock"},
		{"trace", "--docker-host", "unix:///nonexistent/docker.sock"},
		{"sockets", "--runtime-endpoint", "unix:///nonexistent/containerd.sock"},
		{"syscalls", "--runtime-endpoint", "/nonexistent/crio.sock"},
		{"record", "-w", t.TempDir() + "/r", "--runtime-endpoint", "unix:///nonexistent/containerd.sock"},
		{"export", "--runtime-endpoint", "unix:///nonexistent/containerd.sock", "--web.listen-address", "127.0.0.1:0"},
	} {
		r := runSockscope(t, args...)
		assertFailure(t, r, "/nonexistent/")
	}
	// crictl's convention: CONTAINER_RUNTIME_ENDPOINT names the runtime when no flag does.
	cmd := exec.Command(sockscopeBin, "sockets")
	cmd.Env = append(os.Environ(), "CONTAINER_RUNTIME_ENDPOINT=unix:///nonexistent/cri.sock")
	assertFailure(t, runCmd(t, 30*time.Second, cmd), "CRI endpoint unix:///nonexistent/cri.sock: no such file or directory")
	// Without runtimes, --container cannot be resolved.
	assertFailure(t, runSockscope(t, "trace", "--container", "x", "--runtime-endpoint", "none"), "--container needs a container runtime")
}

// A runtime found by probing that does not answer (a socket a crashed daemon left) is a warning;
// the command goes on with namespace inodes.
func TestAProbedRuntimeThatDoesNotAnswerOnlyWarns(t *testing.T) {
	requireTracing(t)
	const n = 5
	ns := newNetns(t)
	root := t.TempDir()
	stale := root + "/run/docker.sock"
	if err := os.MkdirAll(root+"/run", 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	tr := startTrace(t, "--netns", ns.path, "--host-root", root)
	srv := ns.serve(t, "-addr", "127.0.0.1:8080")
	client := ns.tcpload(t, "connect", "-addr", "127.0.0.1:8080", "-n", strconv.Itoa(n))
	srv.stop(t)
	evs, stderr := tr.stop(t)
	assertNoPanic(t, stderr)

	ls := lines(stderr)
	if len(ls) < 2 || !strings.HasPrefix(ls[0], "sockscope: warning: cannot reach the Docker daemon at unix://"+stale) ||
		!strings.HasPrefix(ls[1], "sockscope: warning: no container runtime answers") {
		t.Errorf("want a warning about %s, then one that no runtime answers, got:\n%s", stale, stderr)
	}
	// Without a runtime, nothing is named after a container.
	for _, e := range evs {
		if e.Container != "" || e.ContainerID != "" || e.Netns != ns.inode {
			t.Errorf("want only unnamed events from netns %d: %+v", ns.inode, e)
		}
	}
	assertCounts(t, "connects", connects(evs, func(e jsonEvent) bool { return e.Pid == client.Pid }), map[string]int{"": n})
}

func TestBadNetnsFails(t *testing.T) {
	requireTracing(t)
	for _, tc := range []struct{ path, want string }{
		{"/nonexistent", "no such file"},
		{"/etc/passwd", "not a namespace file"},
		{"/proc/self/ns/mnt", "not of a network namespace"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			assertFailure(t, runSockscope(t, "trace", "--netns", tc.path), "--netns "+tc.path, tc.want)
		})
	}
}

// summaryRE is the line sockscope ends a trace with.
var summaryRE = regexp.MustCompile(`^sockscope: (\d+) events \((\d+) state, (\d+) connect\), (\d+) lost$`)

// loopTraffic makes connections in ns until the returned function is called.
func loopTraffic(t *testing.T, ns netns) (stop func()) {
	t.Helper()
	srv := ns.serve(t, "-addr", "127.0.0.1:8080")
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			default:
			}
			exec.Command("ip", "netns", "exec", ns.name, tcploadBin, "connect", "-addr", "127.0.0.1:8080", "-n", "5").Run()
		}
	}()
	return func() {
		close(done)
		<-finished
		srv.stop(t)
	}
}

func TestClosedOutputPipeEndsTheTraceQuietly(t *testing.T) {
	requireTracing(t)
	ns := newNetns(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(sockscopeBin, "trace", "-o", "json", "--netns", ns.path)
	cmd.Stdout, cmd.Stderr = pw, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	stopTraffic := loopTraffic(t, ns)
	defer stopTraffic()

	// `| head -n 1`: read one line, then close the pipe.
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		first <- line
	}()
	var line string
	select {
	case line = <-first:
	case <-time.After(20 * time.Second):
		t.Fatal("no output within 20s")
	}
	var e jsonEvent
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatalf("first line %q: %v", line, err)
	}
	pr.Close()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("sockscope exited with %v after its output closed, want status 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("sockscope still runs 5s after its output pipe closed; stderr:\n%s", stderr.String())
	}
	assertNoPanic(t, stderr.String())
	for _, l := range lines(stderr.String()) {
		if !strings.HasPrefix(l, "sockscope: attached") && !summaryRE.MatchString(l) {
			t.Errorf("unexpected line on stderr: %q", l)
		}
	}
}

// waitExit waits for a trace that ends by itself and returns its events and stderr.
func (tr *tracer) waitExit(t *testing.T, timeout time.Duration) ([]jsonEvent, string) {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- tr.cmd.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-time.After(timeout):
		tr.cmd.Process.Kill()
		<-exited
		<-tr.done
		t.Fatalf("sockscope trace did not end by itself within %v; stderr:\n%s", timeout, tr.errBuf.String())
	}
	<-tr.done
	stderr := tr.errBuf.String()
	assertNoPanic(t, stderr)
	if err != nil {
		t.Fatalf("sockscope trace exited with %v, want status 0; stderr:\n%s", err, stderr)
	}
	var evs []jsonEvent
	for _, l := range lines(tr.stdout.String()) {
		var e jsonEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	return evs, stderr
}

// summary parses the last line of stderr: events, state, connect, lost.
func summary(t *testing.T, stderr string) [4]int {
	t.Helper()
	ls := lines(stderr)
	var m []string
	if len(ls) > 0 {
		m = summaryRE.FindStringSubmatch(ls[len(ls)-1])
	}
	if m == nil {
		t.Fatalf("stderr does not end with the summary line:\n%s", stderr)
	}
	var s [4]int
	for i := range s {
		s[i], _ = strconv.Atoi(m[i+1])
	}
	return s
}

func TestSIGTERMStopsTheTraceLikeSIGINT(t *testing.T) {
	requireTracing(t)
	const n = 5
	ns := newNetns(t)
	tr := startTrace(t, "--netns", ns.path)
	srv := ns.serve(t, "-addr", "127.0.0.1:8080")
	client := ns.tcpload(t, "connect", "-addr", "127.0.0.1:8080", "-n", strconv.Itoa(n))
	srv.stop(t)
	tr.cmd.Process.Signal(syscall.SIGTERM)
	evs, stderr := tr.waitExit(t, 10*time.Second)

	s := summary(t, stderr)
	if s[0] != s[1]+s[2] || s[3] != 0 {
		t.Errorf("summary %v: events should be state + connect, and none lost", s)
	}
	// In JSON each event is one line of its type.
	if got := len(transitions(evs, nil)); got == 0 {
		t.Errorf("no transitions printed")
	}
	state, conn := 0, 0
	for _, e := range evs {
		switch e.Type {
		case "state":
			state++
		case "connect":
			conn++
		}
	}
	if state != s[1] || conn != s[2] {
		t.Errorf("printed %d state and %d connect lines, summary says %d and %d", state, conn, s[1], s[2])
	}
	assertCounts(t, "connects", connects(evs, func(e jsonEvent) bool { return e.Pid == client.Pid }), map[string]int{"": n})
}

func TestVersionListsTheKernelFeatures(t *testing.T) {
	requireTracing(t)
	r := runSockscope(t, "version")
	assertNoPanic(t, r.stderr)
	if r.code != 0 || r.stderr != "" {
		t.Errorf("exit status %d, stderr %q; want 0 and nothing", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "sockscope ") {
		t.Errorf("first line should name the version:\n%s", r.stdout)
	}
	for _, feature := range []string{"BTF", "ring buffer", "tp_btf", "iterators"} {
		found := false
		for _, l := range lines(r.stdout) {
			if strings.Contains(l, feature) {
				found = true
				if !strings.HasSuffix(l, " yes") {
					t.Errorf("this machine has %s, but: %q", feature, l)
				}
			}
		}
		if !found {
			t.Errorf("no line for %s:\n%s", feature, r.stdout)
		}
	}
}

func TestDurationEndsTheTrace(t *testing.T) {
	requireTracing(t)
	ns := newNetns(t)
	start := time.Now()
	tr := startTrace(t, "--netns", ns.path, "--duration", "1s")
	_, stderr := tr.waitExit(t, 15*time.Second)
	if d := time.Since(start); d < time.Second {
		t.Errorf("--duration 1s ended after %v", d)
	}
	summary(t, stderr)
}

// --count counts output lines; in JSON the transition that ends a connect prints two (state and
// connect), and --count 2 is reached in the middle of it: CLOSE->SYN_SENT, then SYN_SENT->ESTABLISHED.
func TestCountEndsAfterExactlyThatManyLines(t *testing.T) {
	requireTracing(t)
	for _, count := range []int{1, 2, 3, 5} {
		t.Run(strconv.Itoa(count), func(t *testing.T) {
			ns := newNetns(t)
			srv := ns.serve(t, "-addr", "127.0.0.1:8080")
			defer srv.stop(t)
			tr := startTrace(t, "--netns", ns.path, "--count", strconv.Itoa(count))
			ns.tcpload(t, "connect", "-addr", "127.0.0.1:8080", "-n", "3") // 33 lines or more
			evs, stderr := tr.waitExit(t, 15*time.Second)
			if len(evs) != count {
				t.Errorf("--count %d printed %d lines:\n%s", count, len(evs), tr.stdout.String())
			}
			if s := summary(t, stderr); s[0] != len(evs) {
				t.Errorf("summary says %d events, %d were printed", s[0], len(evs))
			}
		})
	}
}

// An empty or malformed size, duration or count is a usage error, never a default: an empty
// --max-size once meant "no limit".
func TestEmptyOrInvalidNumbersAreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"record", "-w", "x.rec", "--max-size="}, "--max-size"},
		{[]string{"record", "-w", "x.rec", "--max-size", "0"}, "--max-size"},
		{[]string{"record", "-w", "x.rec", "--max-size", "-5M"}, "--max-size"},
		{[]string{"record", "-w", "x.rec", "--max-size", "5 M"}, "--max-size"},
		{[]string{"record", "-w", "x.rec", "--duration="}, "--duration"},
		{[]string{"record", "-w", "x.rec", "--interval="}, "--interval"},
		{[]string{"trace", "--count="}, "--count"},
		{[]string{"trace", "--count", "ten"}, "--count"},
		{[]string{"trace", "--duration="}, "--duration"},
		{[]string{"sockets", "--at=", "-r", "x.rec"}, "--at"},
		{[]string{"sockets", "--top="}, "--top"},
		{[]string{"syscalls", "--interval="}, "--interval"},
		{[]string{"syscalls", "--top", "1.5"}, "--top"},
		{[]string{"report", "--top=", "x.rec"}, "--top"},
		{[]string{"report", "--max-inflate=", "x.rec"}, "--max-inflate"},
		{[]string{"diagnose", "--duration="}, "--duration"},
		{[]string{"diagnose", "--interval", "1"}, "--interval"},
		{[]string{"export", "--max-netns="}, "--max-netns"},
		{[]string{"export", "--max-counters", "-1"}, "--max-counters"},
		{[]string{"export", "--web.max-requests="}, "--web.max-requests"},
		{[]string{"export", "--web.idle-timeout="}, "--web.idle-timeout"},
		{[]string{"export", "--syscalls.top="}, "--syscalls.top"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			assertUsageError(t, runSockscope(t, tc.args...), "sockscope "+tc.args[0], tc.flag)
		})
	}
}
