package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/recording"
)

// untimedJSON and untimedTable drop the timing fields of output lines and sort them. Times and
// durations are the measurements of each tracer: a live trace and the recorder run their own BPF
// programs, which read the clock each on their own (a few µs apart), and convert it with clock
// offsets read by different processes. Everything else must be equal.
func untimedJSON(t *testing.T, out string) []string {
	t.Helper()
	var lines []string
	for _, m := range jsonLines[map[string]any](t, out) {
		delete(m, "time")
		delete(m, "prev_state_us")
		delete(m, "latency_us")
		delete(m, "latency_ns")
		b, _ := json.Marshal(m)
		lines = append(lines, string(b))
	}
	slices.Sort(lines)
	return lines
}

func untimedTable(out string) []string {
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// TIME CONTAINER PID COMM LOCAL REMOTE OLDSTATE NEWSTATE PREV_MS [OUTCOME LATENCY]
		f := strings.Fields(line)
		keep := slices.Clone(f[1:min(8, len(f))])
		if len(f) > 9 {
			keep = append(keep, f[9])
		}
		lines = append(lines, strings.Join(keep, " "))
	}
	slices.Sort(lines)
	return lines
}

func assertSameLines(t *testing.T, what string, live, replay []string) {
	t.Helper()
	if slices.Equal(live, replay) {
		return
	}
	t.Errorf("%s: replay differs from live (%d vs %d lines)", what, len(replay), len(live))
	for i := 0; i < max(len(live), len(replay)) && i < 5; i++ {
		var l, r string
		if i < len(live) {
			l = live[i]
		}
		if i < len(replay) {
			r = replay[i]
		}
		if l != r {
			t.Errorf("  live:   %s\n  replay: %s", l, r)
		}
	}
}

// A recording made next to live commands replays as they printed: trace in JSON and as a table,
// sockets, and the syscall counts of a process doing known work.
func TestRecordThenReplayGivesTheLiveOutput(t *testing.T) {
	requireTracing(t)
	const n, refused, fsyncs, unlinks = 50, 5, 100, 40
	ns := newNetns(t)
	// Every client socket must stay in TIME_WAIT for the count below. tcp_tw_reuse=2 (the
	// default) lets a later connect on loopback take over a time-wait port once its timestamp is
	// a second old, which a slow machine (a kernel-matrix guest under TCG) reaches within the 50
	// connects. And a few runs in a hundred see a stray RST (TcpOutRsts) after the teardown,
	// which kills a time-wait socket unless tcp_rfc1337=1 (4 of 40 runs lost one or more
	// without it, none of 60 with it).
	ns.sysctl(t, "net.ipv4.tcp_tw_reuse=0")
	ns.sysctl(t, "net.ipv4.tcp_rfc1337=1")
	file := filepath.Join(t.TempDir(), "incident.rec")
	liveJSON := startTrace(t, "--netns", ns.path)
	liveTable := startAttached(t, nil, "trace", "--netns", ns.path)
	rec := startAttached(t, nil, "record", "-w", file, "--netns", ns.path, "--interval", "500ms")

	srv := ns.serve(t, "-addr", "127.0.0.1:8080", "-n", strconv.Itoa(n))
	if c := ns.tcpload(t, "connect", "-addr", "127.0.0.1:8080", "-n", strconv.Itoa(n)); c.OK != n {
		t.Fatalf("tcpload: %+v", c)
	}
	srv.waitAccepted(t, n) // a reset connection never reaches TIME_WAIT
	srv.stop(t)
	if c := ns.tcpload(t, "connect", "-addr", "127.0.0.1:9", "-n", strconv.Itoa(refused)); c.Errors["ECONNREFUSED"] != refused {
		t.Fatalf("tcpload: %+v", c)
	}
	sh(t, "ip", "netns", "exec", ns.name, sysloadBin, "-dir", t.TempDir(), "-fsync", strconv.Itoa(fsyncs), "-unlink", strconv.Itoa(unlinks))
	ns.settle(t)

	liveOut, _ := liveJSON.interrupt(t)
	tableOut, _ := liveTable.interrupt(t)
	_, recErr := rec.interrupt(t)
	if !strings.Contains(recErr, "(0 lost)") {
		t.Errorf("record lost events:\n%s", recErr)
	}
	liveSockets := runSockscope(t, "sockets", "--netns", ns.path, "-o", "json")
	inode := strconv.FormatUint(uint64(ns.inode), 10)

	replay := runSockscope(t, "trace", "-r", file, "-o", "json")
	if replay.code != 0 {
		t.Fatalf("trace -r: exit %d\n%s", replay.code, replay.stderr)
	}
	assertSameLines(t, "trace -o json", untimedJSON(t, liveOut), untimedJSON(t, replay.stdout))
	replayTable := runSockscope(t, "trace", "-r", file)
	assertSameLines(t, "trace (table)", untimedTable(tableOut), untimedTable(replayTable.stdout))

	// The replay's numbers are the traffic's.
	assertCounts(t, "replayed connects", connects(jsonLines[jsonEvent](t, replay.stdout), nil), map[string]int{"": n, "ECONNREFUSED": refused})
	// Filters apply to a replay as they do live.
	onlyErrors := runSockscope(t, "trace", "-r", file, "-o", "json", "--connect-errors", "--netns", inode)
	if got := len(strings.Split(strings.TrimSpace(onlyErrors.stdout), "\n")); got != refused {
		t.Errorf("trace -r --connect-errors printed %d lines, want %d:\n%s", got, refused, onlyErrors.stdout)
	}

	replaySockets := runSockscope(t, "sockets", "-r", file, "--netns", inode, "-o", "json")
	if replaySockets.code != 0 {
		t.Fatalf("sockets -r: exit %d\n%s", replaySockets.code, replaySockets.stderr)
	}
	assertSameLines(t, "sockets -o json", untimedJSON(t, liveSockets.stdout), untimedJSON(t, replaySockets.stdout))
	if tw := strings.Count(replaySockets.stdout, `"state":"TIME_WAIT"`); tw != n {
		t.Errorf("sockets -r shows %d TIME_WAIT sockets, want %d", tw, n)
	}

	sys := runSockscope(t, "syscalls", "-r", file, "--netns", inode, "--by", "comm,syscall", "--syscall", "fsync,unlinkat", "-o", "json")
	got := map[string]uint64{}
	for _, r := range jsonLines[sysRowJSON](t, sys.stdout) {
		got[r.Comm+" "+r.Syscall] += r.Count
	}
	if want := map[string]uint64{"sysload fsync": fsyncs, "sysload unlinkat": unlinks}; !maps.Equal(got, want) {
		t.Errorf("syscalls -r: got %v, want %v", got, want)
	}
}

// findingJSON is one line of `sockscope diagnose -o json`.
type findingJSON struct {
	Kind      string             `json:"kind"`
	Severity  string             `json:"severity"`
	Container string             `json:"container"`
	Summary   string             `json:"summary"`
	Evidence  []string           `json:"evidence"`
	Numbers   map[string]float64 `json:"numbers"`
	Verify    string             `json:"verify"`
	Fix       string             `json:"fix"`
}

func diagnoseFile(t *testing.T, file string, args ...string) []findingJSON {
	t.Helper()
	r := runSockscope(t, append([]string{"diagnose", "-r", file, "-o", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("diagnose -r %s: exit %d\n%s", file, r.code, r.stderr)
	}
	return parseFindings(t, r.stdout)
}

func parseFindings(t *testing.T, out string) []findingJSON {
	t.Helper()
	return jsonLines[findingJSON](t, out)
}

// assertFinding checks that the findings are exactly one of kind, for container, with numbers.
func assertFinding(t *testing.T, fs []findingJSON, kind, container string, numbers map[string]float64) {
	t.Helper()
	if len(fs) != 1 || fs[0].Kind != kind || fs[0].Container != container {
		t.Fatalf("want exactly one %s finding for %s, got %+v", kind, container, fs)
	}
	f := fs[0]
	for k, want := range numbers {
		if got, ok := f.Numbers[k]; !ok || got != want {
			t.Errorf("%s: %s = %v, want %v (all: %v)", kind, k, got, want, f.Numbers)
		}
	}
	if f.Verify == "" || f.Fix == "" || f.Summary == "" {
		t.Errorf("%s: finding without summary, verify command or fix: %+v", kind, f)
	}
	t.Logf("%s %s: %s\n  verify: %s", f.Severity, f.Kind, f.Summary, f.Verify)
}

func startRecord(t *testing.T, args ...string) (*tracer, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "incident.rec")
	return startAttached(t, nil, append([]string{"record", "-w", file, "--interval", "500ms"}, args...)...), file
}

func stopRecord(t *testing.T, rec *tracer) {
	t.Helper()
	_, stderr := rec.interrupt(t)
	if !strings.Contains(stderr, "(0 lost)") {
		t.Errorf("record lost events:\n%s", stderr)
	}
}

// The nginx -> upstream incident in a container: four local ports, tcp_tw_reuse off, a client
// that closes first. Recorded, then diagnosed; and diagnosed live at the same time.
func TestDiagnosePortExhaustion(t *testing.T) {
	requireDocker(t)
	c := newContainer(t, []string{"run", "-d", "--sysctl", "net.ipv4.ip_local_port_range=61000 61003",
		"--sysctl", "net.ipv4.tcp_tw_reuse=0", "-v", tcploadBin + ":/bin/tcpload:ro"}, containerName("ports"), httpdCmd...)
	c.waitListening(t, 8080)
	rec, file := startRecord(t, "--container", c.name)
	live := startAttached(t, nil, "diagnose", "--container", c.name, "--duration", "8s", "--interval", "500ms", "-o", "json")
	out := sh(t, "docker", "exec", c.name, "tcpload", "connect", "-addr", "127.0.0.1:8080", "-n", "7")
	if !strings.Contains(out, `"ok":4`) || !strings.Contains(out, `"EADDRNOTAVAIL":3`) {
		t.Fatalf("port exhaustion in %s: %s", c.name, out)
	}
	c.waitTimeWait(t, 4)
	time.Sleep(time.Second) // a snapshot with the TIME_WAIT sockets (two intervals)
	stopRecord(t, rec)
	want := map[string]float64{"eaddrnotavail": 3, "range_ports": 4, "peak_used": 4, "peak_time_wait": 4, "tw_reuse": 0}
	assertFinding(t, diagnoseFile(t, file), "port_exhaustion", c.name, want)
	if err := live.cmd.Wait(); err != nil {
		t.Fatalf("live diagnose: %v\n%s", err, live.errBuf.String())
	}
	<-live.done
	assertFinding(t, parseFindings(t, live.stdout.String()), "port_exhaustion", c.name, want)

	report := runSockscope(t, "report", file, "--html", filepath.Join(t.TempDir(), "r.html"))
	for _, s := range []string{c.name, "EADDRNOTAVAIL 3", "127.0.0.1:8080"} {
		if !strings.Contains(report.stdout, s) {
			t.Errorf("report lacks %q:\n%s", s, report.stdout)
		}
	}
}

// The pool that was not a pool: a client keeps opening connections to one listener and never
// closes them.
func TestDiagnoseConnectionLeak(t *testing.T) {
	requireDocker(t)
	const batches, per = 5, 10
	c := newContainer(t, []string{"run", "-d", "-v", tcploadBin + ":/bin/tcpload:ro"}, containerName("leak"),
		testImage, "tcpload", "serve", "-addr", "127.0.0.1:8080")
	c.waitListening(t, 8080)
	rec, file := startRecord(t, "--container", c.name)
	for i := 0; i < batches; i++ {
		cmd := exec.Command("docker", "exec", c.name, "tcpload", "connect", "-addr", "127.0.0.1:8080", "-n", strconv.Itoa(per), "-hold")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line, err := bufio.NewReader(stdout).ReadString('\n') // printed once all are connected
		if err != nil || !strings.Contains(line, fmt.Sprintf(`"holding":%d`, per)) {
			t.Fatalf("tcpload connect -hold: %q %v", line, err)
		}
		time.Sleep(1200 * time.Millisecond)
	}
	stopRecord(t, rec)
	assertFinding(t, diagnoseFile(t, file), "connection_leak", c.name,
		map[string]float64{"first": per, "last": batches * per, "opened": batches * per, "closed": 0})
}

// open files 1024: a process in a container opens files until EMFILE.
func TestDiagnoseFileDescriptorLimit(t *testing.T) {
	requireDocker(t)
	const emfiles = 25
	c := newContainer(t, []string{"run", "-d", "--ulimit", "nofile=1024:1024", "-v", sysloadBin + ":/bin/sysload:ro"},
		containerName("fds"), testImage, "sleep", "3600")
	rec, file := startRecord(t, "--container", c.name)
	sh(t, "docker", "exec", c.name, "sysload", "-dir", "/tmp/fds", "-emfile", strconv.Itoa(emfiles), "-hold", "2s")
	stopRecord(t, rec)
	fs := diagnoseFile(t, file)
	assertFinding(t, fs, "fd_limit", c.name, map[string]float64{"emfile": emfiles, "enfile": 0, "nofile_soft": 1024, "nofile_hard": 1024})
	if !strings.Contains(fs[0].Summary, "sysload") {
		t.Errorf("the finding does not name the process: %s", fs[0].Summary)
	}
}

// No graceful shutdown: PID 1 is a shell that ignores SIGTERM, so docker stop kills the
// container after its timeout, with connections open.
func TestDiagnoseContainerStoppedWithOpenConnections(t *testing.T) {
	requireDocker(t)
	const conns = 3
	c := newContainer(t, []string{"run", "-d", "-v", tcploadBin + ":/bin/tcpload:ro"}, containerName("stop"), testImage, "sh", "-c",
		fmt.Sprintf("tcpload serve -addr 127.0.0.1:8080 & sleep 0.5; tcpload connect -addr 127.0.0.1:8080 -n %d -hold; wait", conns))
	c.waitListening(t, 8080)
	rec, file := startRecord(t)
	time.Sleep(1500 * time.Millisecond) // snapshots with the connections
	sh(t, "docker", "stop", "-t", "1", c.name)
	time.Sleep(1500 * time.Millisecond) // the die event and the kernel's closes
	stopRecord(t, rec)
	fs := diagnoseFile(t, file, "--container", c.name)
	if len(fs) != 1 {
		t.Log(runSockscope(t, "report", file, "--container", c.name).stdout)
	}
	assertFinding(t, fs, "unclean_stop", c.name, map[string]float64{"exit_code": 137, "open_connections": 2 * conns, "closed_at_stop": 2 * conns})
}

// A small valid recording, written with the format's own writer: a meta block and one event.
func writeRecording(t *testing.T, version uint16) string {
	t.Helper()
	var b bytes.Buffer
	w, err := recording.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := json.Marshal(recording.Meta{Hostname: "h", Start: time.Unix(1700000000, 0).UTC(), Interval: time.Second})
	w.WriteBlock(recording.BlockMeta, 1700000000e9, meta)
	ev := trace.EncodeEvent(&trace.Event{Family: syscall.AF_INET, OldState: events.StateClose, NewState: events.StateListen, Kind: trace.KindState})
	w.WriteBlock(recording.BlockEvents, 1700000001e9, ev)
	data := b.Bytes()
	if version != recording.Version {
		binary.LittleEndian.PutUint16(data[8:], version)
		binary.LittleEndian.PutUint32(data[12:], crc32.Checksum(data[:12], crc32.MakeTable(crc32.Castagnoli)))
	}
	path := filepath.Join(t.TempDir(), "r.rec")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Bad recordings give one line with the file, the offset and what is wrong; nothing panics.
func TestBadRecordingsFailWithTheOffset(t *testing.T) {
	good := writeRecording(t, recording.Version)
	data, _ := os.ReadFile(good)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	truncated := write("truncated.rec", data[:len(data)-10])
	corrupt := slices.Clone(data)
	corrupt[len(corrupt)-20] ^= 0xff
	corruptPath := write("corrupt.rec", corrupt)
	foreign := write("foreign.rec", []byte("PK\x03\x04 this is a zip file, not a recording"))
	newer := writeRecording(t, recording.Version+1)
	blockStart := len(data) - (16 + 96 + 4)
	for _, tc := range []struct {
		file string
		want []string
	}{
		{truncated, []string{truncated, fmt.Sprintf("offset %d: truncated", len(data)-10)}},
		{corruptPath, []string{corruptPath, fmt.Sprintf("offset %d: checksum mismatch", blockStart)}},
		{foreign, []string{foreign, "offset 0: not a sockscope recording"}},
		{newer, []string{newer, "newer sockscope", fmt.Sprintf("format version %d", recording.Version+1), "upgrade"}},
		{filepath.Join(dir, "missing.rec"), []string{"no such file"}},
	} {
		for _, cmd := range [][]string{{"trace", "-r"}, {"sockets", "-r"}, {"syscalls", "-r"}, {"report"}, {"diagnose", "-r"}} {
			t.Run(filepath.Base(tc.file)+"/"+cmd[0], func(t *testing.T) {
				assertFailure(t, runSockscope(t, append(cmd, tc.file)...), tc.want...)
			})
		}
	}
	// The good file replays its one event.
	if r := runSockscope(t, "trace", "-r", good, "-o", "json"); r.code != 0 || len(lines(r.stdout)) != 1 {
		t.Errorf("trace -r of a good file: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestRecordBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"record"}, []string{"-w FILE is required"}},
		{[]string{"record", "-w", "x.rec", "--max-size", "12Q"}, []string{"--max-size", "K, M or G"}},
		{[]string{"record", "-w", "x.rec", "--max-size", "1K"}, []string{"too small"}},
		{[]string{"record", "-w", "-", "--max-size", "10M"}, []string{"standard output"}},
		{[]string{"record", "-w", "x.rec", "--interval", "1ms"}, []string{"--interval"}},
		{[]string{"record", "-w", "x.rec", "--comm", "a-very-long-process-name"}, []string{"--comm", "15 bytes"}},
		{[]string{"trace", "-r", "x.rec", "--duration", "5s"}, []string{"--duration"}},
		{[]string{"sockets", "--at", "5s"}, []string{"-r FILE"}},
		{[]string{"report"}, []string{"give one recording"}},
		{[]string{"report", "a", "b"}, []string{"give one recording"}},
		{[]string{"diagnose", "extra"}, []string{"unexpected argument"}},
		{[]string{"diagnose", "--duration", "0s"}, []string{"--duration"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			assertUsageError(t, runSockscope(t, tc.args...), "sockscope "+tc.args[0], tc.want...)
		})
	}
}

// A recording is evidence: an existing file is not overwritten without --force.
func TestRecordKeepsAnExistingFile(t *testing.T) {
	requireTracing(t)
	path := filepath.Join(t.TempDir(), "evidence.rec")
	os.WriteFile(path, []byte("earlier evidence"), 0o644)
	assertFailure(t, runSockscope(t, "record", "-w", path, "--duration", "1s"), path, "already exists", "--force")
	if b, _ := os.ReadFile(path); string(b) != "earlier evidence" {
		t.Errorf("the existing file was changed: %q", b)
	}
	if r := runSockscope(t, "record", "-w", path, "--duration", "1s", "--force"); r.code != 0 {
		t.Fatalf("record --force: exit %d\n%s", r.code, r.stderr)
	}
	if r := runSockscope(t, "report", path); r.code != 0 || !strings.Contains(r.stdout, "sockscope report") {
		t.Errorf("report of the new file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
