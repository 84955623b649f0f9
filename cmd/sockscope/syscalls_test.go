package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sockscope/sockscope/internal/testenv"
)

var sysloadBin string

func init() { extraBins["sysload"] = &sysloadBin }

type sysRowJSON struct {
	Type      string `json:"type"`
	Container string `json:"container"`
	Netns     uint32 `json:"netns"`
	Comm      string `json:"comm"`
	Pid       int    `json:"pid"`
	Syscall   string `json:"syscall"`
	Count     uint64 `json:"count"`
	Errors    uint64 `json:"errors"`
	Errno     string `json:"errno"`
	Path      string `json:"path"`
}

// startSyscalls starts `sockscope syscalls -o json` with every row printed.
func startSyscalls(t *testing.T, args ...string) *tracer {
	t.Helper()
	return startAttached(t, nil, append([]string{"syscalls", "-o", "json", "--top", "100000"}, args...)...)
}

// syscallRows stops the count and returns the rows it printed.
func syscallRows(t *testing.T, c *tracer) []sysRowJSON {
	t.Helper()
	stdout, _ := c.interrupt(t)
	return jsonLines[sysRowJSON](t, stdout)
}

type sysloadResult struct {
	Pid int `json:"pid"`
}

// The DTrace incident: a process creating and deleting temp files in a loop, fsync each time,
// and a file-descriptor limit. sockscope's counts, errnos and paths equal exactly what it did.
func TestSyscallsCountExactlyWhatAProcessDid(t *testing.T) {
	requireTracing(t)
	const fsyncs, unlinks, emfiles = 1000, 1000, 7
	ns := newNetns(t)
	dir := t.TempDir()
	c := startSyscalls(t, "--netns", ns.path, "--errors", "--paths")
	// The same work outside the traced netns must not be counted.
	outside := sh(t, sysloadBin, "-dir", filepath.Join(dir, "outside"), "-fsync", "500", "-unlink", "50")
	out := sh(t, "ip", "netns", "exec", ns.name, sysloadBin, "-dir", filepath.Join(dir, "in"),
		"-fsync", fmt.Sprint(fsyncs), "-unlink", fmt.Sprint(unlinks), "-emfile", fmt.Sprint(emfiles))
	rows := syscallRows(t, c)
	var in, out2 sysloadResult
	json.Unmarshal([]byte(lastLine(out)), &in)
	json.Unmarshal([]byte(lastLine(outside)), &out2)

	got := map[string]uint64{}
	unlinked := 0
	for _, r := range rows {
		if r.Netns != ns.inode || r.Pid == out2.Pid {
			t.Fatalf("counted outside the traced netns: %+v", r)
		}
		// The same PID is `ip` until it execs sysload; like DTrace's execname, the comm is part
		// of the key, so ip's own calls are rows of their own.
		if r.Pid != in.Pid || r.Comm != "sysload" {
			continue
		}
		switch r.Type {
		case "syscall":
			got[r.Syscall] += r.Count
		case "error":
			got[r.Syscall+" "+r.Errno] += r.Count
		case "path":
			if r.Syscall == "unlinkat" && strings.HasPrefix(r.Path, filepath.Join(dir, "in", "io-file-")) {
				unlinked++
				if r.Count != 1 {
					t.Errorf("path %s unlinked %d times, want 1", r.Path, r.Count)
				}
			}
		}
	}
	if got["fsync"] != fsyncs || got["unlinkat"] != unlinks || got["openat EMFILE"] != emfiles {
		t.Errorf("fsync %d (want %d), unlinkat %d (want %d), openat EMFILE %d (want %d)",
			got["fsync"], fsyncs, got["unlinkat"], unlinks, got["openat EMFILE"], emfiles)
	}
	if unlinked != unlinks {
		t.Errorf("%d distinct unlinked paths, want %d", unlinked, unlinks)
	}
}

// In a container, counted under the container's name.
func TestSyscallsOfAContainerAreNamed(t *testing.T) {
	requireDocker(t)
	name := containerName("syscalls")
	newContainer(t, []string{"run", "-d", "-v", sysloadBin + ":/bin/sysload:ro"}, name, testImage, "sleep", "600")
	c := startSyscalls(t, "-c", name, "--by", "container,syscall")
	sh(t, "docker", "exec", name, "sysload", "-dir", "/tmp/x", "-fsync", "300")
	rows := syscallRows(t, c)
	n := uint64(0)
	for _, r := range rows {
		if r.Container != name {
			t.Fatalf("row not named for %s: %+v", name, r)
		}
		if r.Type == "syscall" && r.Syscall == "fsync" {
			n += r.Count
		}
	}
	if n != 300 {
		t.Errorf("fsync in %s: %d, want 300", name, n)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// A return from a signal handler reaches the kernel's syscall exit without a syscall number
// (rt_sigreturn clears it, so the interrupted call is not restarted). It is counted as
// rt_sigreturn, exactly once per handled signal, never as an invalid number: a Go program's
// preemption signals once made a flood of invalid numbers count one more than was made.
func TestSignalReturnsAreCountedAsRtSigreturn(t *testing.T) {
	requireTracing(t)
	testenv.Command(t, "gcc")
	const signals = 250
	dir := t.TempDir()
	src := filepath.Join(dir, "sigs.c")
	prog := `#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static volatile sig_atomic_t handled;
static void on_usr1(int sig) { (void)sig; handled++; }
int main(int argc, char **argv) {
	struct sigaction sa = {0};
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	char c;
	if (read(0, &c, 1) != 1) return 1; /* wait until sockscope is attached */
	int n = atoi(argv[1]);
	for (int i = 0; i < n; i++) raise(SIGUSR1);
	printf("handled %d\n", (int)handled);
	return 0;
}
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sigs")
	if out, err := exec.Command("gcc", "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, strconv.Itoa(signals))
	stdin, _ := cmd.StdinPipe()
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := startSyscalls(t, "--pid", strconv.Itoa(cmd.Process.Pid), "--errors")
	stdin.Write([]byte{'x'})
	if err := cmd.Wait(); err != nil || strings.TrimSpace(out.String()) != fmt.Sprintf("handled %d", signals) {
		t.Fatalf("the program: %v, %q", err, out.String())
	}
	got := map[string]uint64{}
	for _, r := range syscallRows(t, c) {
		if r.Type == "syscall" {
			got[r.Syscall] += r.Count
		}
	}
	if got["rt_sigreturn"] != signals || got["invalid"] != 0 {
		t.Errorf("rt_sigreturn %d (want %d), invalid %d (want 0); all: %v", got["rt_sigreturn"], signals, got["invalid"], got)
	}
}
