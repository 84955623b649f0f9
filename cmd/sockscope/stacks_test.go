package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

// opener is a running stacks/testdata program (opener.c or opener.js): it waits for a byte on
// stdin, makes exactly 300 openat calls, says "done 300", and waits for stdin to close.
type opener struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startOpener(t *testing.T, name string, args ...string) *opener {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	return &opener{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
}

// run lets the opener make its 300 calls and waits for them.
func (o *opener) run(t *testing.T) {
	t.Helper()
	if _, err := o.stdin.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	line, err := o.out.ReadString('\n')
	if err != nil || line != "done 300\n" {
		t.Fatalf("opener said %q, %v; want done 300", line, err)
	}
}

// buildOpener compiles stacks/testdata/opener.c with gcc and flags, as name.
func buildOpener(t *testing.T, dir, name string, flags ...string) string {
	t.Helper()
	testenv.Command(t, "gcc")
	src, err := filepath.Abs("../../stacks/testdata/opener.c")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	if out, err := exec.Command("gcc", append(append([]string{}, flags...), "-o", bin, src)...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", flags, err, out)
	}
	return bin
}

// foldedCounts parses `-o folded` output: stack line -> count.
func foldedCounts(t *testing.T, out string) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		n, err := strconv.Atoi(line[i+1:])
		if i < 0 || err != nil {
			t.Fatalf("folded line %q", line)
		}
		m[line[:i]] += n
	}
	return m
}

// sumWhere adds the counts of the stacks that hold every frame in order, outermost first.
func sumWhere(m map[string]int, frames ...string) (n int) {
	for st, c := range m {
		parts := strings.Split(st, ";")
		k := 0
		for _, p := range parts {
			if k < len(frames) && p == frames[k] {
				k++
			}
		}
		if k == len(frames) {
			n += c
		}
	}
	return n
}

// Incident 2's last question, "which code opens these files": every one of 300 openat calls of a
// C program is attributed to a stack that names write_temp_file, called by fill_directory, called
// by main, for a build with frame pointers and one without (Debian's own libraries have none: the
// stack goes through libc's open by its CFI).
func TestSyscallStacksNameTheFunction(t *testing.T) {
	requireTracing(t)
	for _, b := range []struct{ name, flag string }{{"fp", "-fno-omit-frame-pointer"}, {"nofp", "-fomit-frame-pointer"}} {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := buildOpener(t, dir, "opener-"+b.name, "-O2", b.flag)
			o := startOpener(t, bin, dir)
			c := startAttached(t, nil, "syscalls", "--stacks", "--syscall", "openat", "--pid", strconv.Itoa(o.cmd.Process.Pid), "-o", "folded", noDocker)
			o.run(t)
			stdout, stderr := c.interrupt(t)
			m := foldedCounts(t, stdout)
			total := 0
			for _, n := range m {
				total += n
			}
			named := sumWhere(m, "opener-"+b.name, "_start", "main", "fill_directory", "write_temp_file")
			if total != 300 || named != 300 {
				t.Fatalf("%d openat stacks, %d of them through main, fill_directory and write_temp_file; want 300 of 300\n%s", total, named, stdout)
			}
			if !strings.Contains(stderr, "stacks: 300 calls matched, every one copied") {
				t.Errorf("stderr does not say every call was copied:\n%s", stderr)
			}
		})
	}
}

// DTrace's /execname == "node"/: two programs in one netns make the same calls; --comm counts
// one of them, exactly, in the counts and in the stacks, and nothing of the other.
func TestSyscallsCommCountsOnlyThatCommand(t *testing.T) {
	requireTracing(t)
	ns := newNetns(t)
	dir := t.TempDir()
	a := buildOpener(t, dir, "opener-a", "-O2")
	b := buildOpener(t, dir, "opener-b", "-O2")
	oa := startOpener(t, "ip", "netns", "exec", ns.name, a, dir)
	ob := startOpener(t, "ip", "netns", "exec", ns.name, b, filepath.Join(dir, "b"))
	os.Mkdir(filepath.Join(dir, "b"), 0o755)
	time.Sleep(200 * time.Millisecond) // both exec'd and blocked on stdin
	c := startAttached(t, nil, "syscalls", "-o", "json", "--top", "1000", "--netns", ns.path, "--comm", "opener-a", "--syscall", "openat", "--stacks", noDocker)
	oa.run(t)
	ob.run(t)
	stdout, _ := c.interrupt(t)
	counts := map[string]uint64{}
	stacks := map[string]uint64{}
	for _, r := range jsonLines[struct {
		Type    string `json:"type"`
		Comm    string `json:"comm"`
		Syscall string `json:"syscall"`
		Count   uint64 `json:"count"`
	}](t, stdout) {
		switch r.Type {
		case "syscall":
			counts[r.Comm+" "+r.Syscall] += r.Count
		case "stack":
			stacks[r.Comm+" "+r.Syscall] += r.Count
		}
	}
	want := map[string]uint64{"opener-a openat": 300}
	if len(counts) != 1 || counts["opener-a openat"] != 300 || len(stacks) != 1 || stacks["opener-a openat"] != 300 {
		t.Fatalf("counts %v, stacks %v; want %v in both\n%s", counts, stacks, want, stdout)
	}
}

// JIT frames: node (Debian's package) runs writeTempFile() from fillDirectory(), opening a file
// 300 times; with --perf-basic-prof --interpreted-frames-native-stack every stack names both
// JavaScript functions, from the perf map node writes.
func TestSyscallStacksNameJavaScriptFunctions(t *testing.T) {
	requireTracing(t)
	node := testenv.Command(t, "node")
	dir := t.TempDir()
	script, err := filepath.Abs("../../stacks/testdata/opener.js")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "--perf-basic-prof", "--interpreted-frames-native-stack", script, dir)
	cmd.Dir = dir // V8 writes an isolate log into its working directory
	o := &opener{cmd: cmd}
	o.stdin, _ = cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	o.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		os.Remove("/tmp/perf-" + strconv.Itoa(cmd.Process.Pid) + ".map")
	})
	waitBlocked(t, cmd.Process.Pid)
	c := startAttached(t, nil, "syscalls", "--stacks", "--syscall", "openat", "--pid", strconv.Itoa(cmd.Process.Pid), "-o", "folded", noDocker)
	o.run(t)
	out, _ := c.interrupt(t)
	m := foldedCounts(t, out)
	named := 0
	for st, n := range m {
		if strings.Contains(st, "fillDirectory") && strings.Contains(st, "writeTempFile") &&
			strings.Index(st, "fillDirectory") < strings.Index(st, "writeTempFile") {
			named += n
		}
	}
	if named != 300 {
		t.Fatalf("%d of 300 openat stacks name fillDirectory, then writeTempFile:\n%s", named, out)
	}
}

// waitBlocked waits until pid sleeps in a read (node starts slowly: its own openat calls are over
// by then).
func waitBlocked(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/wchan")
		st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if f := strings.Fields(string(st)); len(f) > 2 && f[2] == "S" && len(b) > 0 && string(b) != "0" &&
			(strings.Contains(string(b), "read") || strings.Contains(string(b), "wait")) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("process %d never blocked on its stdin", pid)
}

// A program that exists only inside a container (a static build copied in, the host's copy
// deleted), selected with --container: its frames are named from the container's file.
func TestSyscallStacksOfAContainerOnlyBinary(t *testing.T) {
	requireDocker(t)
	dir := t.TempDir()
	r := make([]byte, 3)
	rand.Read(r)
	name := "opener-" + hex.EncodeToString(r)
	bin := buildOpener(t, dir, name, "-O2", "-fomit-frame-pointer", "-static")
	ctr := containerName("stacks")
	newContainer(t, []string{"run", "-d"}, ctr, testImage, "sleep", "600")
	sh(t, "docker", "cp", bin, ctr+":/"+name)
	os.Remove(bin)
	o := startOpener(t, "docker", "exec", "-i", ctr, "/"+name, "/tmp")
	time.Sleep(300 * time.Millisecond) // exec'd in the container, blocked on stdin
	c := startAttached(t, nil, "syscalls", "--stacks", "--syscall", "openat", "--comm", name[:min(15, len(name))], "-c", ctr, "-o", "json")
	o.run(t)
	stdout, _ := c.interrupt(t)
	named := uint64(0)
	for _, r := range jsonLines[struct {
		Type      string `json:"type"`
		Container string `json:"container"`
		Count     uint64 `json:"count"`
		Stack     []struct {
			Name   string `json:"name"`
			Module string `json:"module"`
		} `json:"stack"`
	}](t, stdout) {
		if r.Type != "stack" {
			continue
		}
		var names []string
		for _, f := range r.Stack {
			names = append(names, f.Name)
			if f.Module != "/"+name {
				t.Errorf("frame %s of module %q, want /%s", f.Name, f.Module, name)
			}
		}
		if r.Container == ctr && strings.Contains(strings.Join(names, ";"), "write_temp_file;fill_directory;main") {
			named += r.Count
		}
	}
	if named != 300 {
		t.Fatalf("%d of 300 stacks of container %s name write_temp_file, fill_directory and main:\n%s", named, ctr, stdout)
	}
}

// The stacks of a Go program (frame pointers, no .eh_frame) in a netns, on every kernel of the
// matrix: each of its fsync calls is attributed to main.doFsync, called by main.main, exactly.
func TestSyscallStacksOfAGoProgram(t *testing.T) {
	requireTracing(t)
	const fsyncs = 200
	ns := newNetns(t)
	dir := t.TempDir()
	c := startAttached(t, nil, "syscalls", "--stacks", "--syscall", "fsync", "--netns", ns.path, "-o", "folded", noDocker)
	// Stacks are unwound from the process's own mappings while it lives: sysload stays 5 s after
	// its calls, for a reader that lags (a guest under qemu's TCG took seconds to read its first).
	sh(t, "ip", "netns", "exec", ns.name, sysloadBin, "-dir", dir, "-fsync", strconv.Itoa(fsyncs), "-hold", "5s")
	stdout, stderr := c.interrupt(t)
	m := foldedCounts(t, stdout)
	total := 0
	for _, n := range m {
		total += n
	}
	if named := sumWhere(m, "sysload", "runtime.main", "main.main", "main.doFsync"); total != fsyncs || named != fsyncs {
		t.Fatalf("%d fsync stacks, %d of them through main.main and main.doFsync; want %d of %d\n%s\n%s", total, named, fsyncs, fsyncs, stdout, stderr)
	}
}

// Stacks in a recording: `record --stacks=openat` of a netns where a C program opens 300 files;
// `report` lists the stack through write_temp_file with exactly 300 calls, its JSON holds the
// same, and the HTML page draws it as a flame graph.
func TestRecordedStacksReachTheReport(t *testing.T) {
	requireTracing(t)
	ns := newNetns(t)
	dir := t.TempDir()
	bin := buildOpener(t, dir, "opener-rec", "-O2", "-fomit-frame-pointer")
	o := startOpener(t, "ip", "netns", "exec", ns.name, bin, dir)
	time.Sleep(200 * time.Millisecond) // exec'd, blocked on stdin
	rec, file := startRecord(t, "--netns", ns.path, "--stacks=openat", "--syscalls=false", noDocker)
	o.run(t)
	time.Sleep(600 * time.Millisecond) // one interval's stacks block, besides the last
	stopRecord(t, rec)

	var r struct {
		Notes   []string
		Targets []struct {
			Netns  uint32
			Stacks []struct {
				Comm, Syscall string
				Frames        []string
				Count         uint64
			}
		}
	}
	out := runSockscope(t, "report", "-o", "json", file)
	if out.code != 0 {
		t.Fatalf("report -o json: exit %d\n%s", out.code, out.stderr)
	}
	if err := json.Unmarshal([]byte(out.stdout), &r); err != nil {
		t.Fatal(err)
	}
	total, named := uint64(0), uint64(0)
	for _, tg := range r.Targets {
		for _, s := range tg.Stacks {
			if tg.Netns != ns.inode || s.Comm != "opener-rec" || s.Syscall != "openat" {
				t.Errorf("a stack of %s %s in netns %d", s.Comm, s.Syscall, tg.Netns)
				continue
			}
			total += s.Count
			if strings.Contains(strings.Join(s.Frames, ";"), "write_temp_file;fill_directory;main") {
				named += s.Count
			}
		}
	}
	if total != 300 || named != 300 {
		t.Fatalf("the report has %d openat stacks, %d through write_temp_file, fill_directory and main; want 300 of 300\n%s", total, named, out.stdout)
	}
	if !slices.Contains(r.Notes, "stacks: every call of openat (300)") {
		t.Errorf("the report's notes do not say every openat call was unwound: %q", r.Notes)
	}

	text := runSockscope(t, "report", file)
	if !strings.Contains(text.stdout, "  300  opener-rec  openat\n") || !strings.Contains(text.stdout, "      write_temp_file\n") {
		t.Errorf("report's text does not show the stack:\n%s", text.stdout)
	}
	page := filepath.Join(dir, "report.html")
	if h := runSockscope(t, "report", "--html", page, file); h.code != 0 {
		t.Fatalf("report --html: exit %d\n%s", h.code, h.stderr)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if html := string(b); !strings.Contains(html, `<svg class="flame"`) || !strings.Contains(html, "<title>write_temp_file: 300 (100.0%)</title>") || strings.Contains(html, "<script") {
		t.Errorf("the HTML report has no flame graph with write_temp_file at 300 calls, or has a script")
	}
}
