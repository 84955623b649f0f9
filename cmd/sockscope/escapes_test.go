package main

// Names any process can set reach the operator's terminal escaped, and the commands findings
// give to paste quote what they insert.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostile is a name that retitles an xterm: ESC ] 0 ; PWN BEL. What a terminal shows instead.
const (
	hostile  = "\x1b]0;PWN\x07"
	shown    = `\x1b]0;PWN\a`
	rawBytes = "\x1b\x07"
)

func assertNoRaw(t *testing.T, what, out string) {
	t.Helper()
	if i := strings.IndexAny(out, rawBytes); i >= 0 {
		t.Errorf("%s holds a raw %q at byte %d: %q", what, out[i], i, out[max(0, i-40):min(len(out), i+40)])
	}
}

// A process named ESC]0;PWN BEL, in a namespace named with it too, listens, connects and runs
// out of local ports. trace, sockets, report and diagnose show its name escaped, never raw; the
// verify command quotes the namespace's name so that a paste runs what it says; JSON keeps the
// exact name, JSON-escaped.
func TestAHostileProcessNameReachesNoTerminal(t *testing.T) {
	requireTracing(t)
	name := fmt.Sprintf("sockscope-test-%d-%d%s", os.Getpid(), rand.IntN(1<<30), hostile)
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	var st syscall.Stat_t
	path := "/run/netns/" + name
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	ns := netns{name: name, path: path, inode: uint32(st.Ino)}
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	ns.sysctl(t, "net.ipv4.ip_local_port_range=61000 61003")
	ns.sysctl(t, "net.ipv4.tcp_tw_reuse=0")
	// The kernel names a process after the file it executed: a link to tcpload.
	bin := filepath.Join(t.TempDir(), hostile)
	if err := os.Symlink(tcploadBin, bin); err != nil {
		t.Fatal(err)
	}

	table := startAttached(t, nil, "trace", "--netns", path)
	jsonTrace := startTrace(t, "--netns", path)
	rec, file := startRecord(t, "--netns", path)
	srv := ns.serveBin(t, bin, "-addr", "127.0.0.1:8080")
	out := sh(t, "ip", "netns", "exec", name, bin, "connect", "-addr", "127.0.0.1:8080", "-n", "7")
	if !strings.Contains(out, `"ok":4`) || !strings.Contains(out, `"EADDRNOTAVAIL":3`) {
		t.Fatalf("connect: %s", out)
	}
	socks := runSockscope(t, "sockets", "--netns", path)
	time.Sleep(time.Second) // a snapshot with the TIME_WAIT sockets
	srv.halt()
	tableOut, tableErr := table.interrupt(t)
	jsonOut, _ := jsonTrace.interrupt(t)
	stopRecord(t, rec)
	report := runSockscope(t, "report", file)
	diag := runSockscope(t, "diagnose", "-r", file)

	for _, c := range []struct {
		what, out, want string
	}{
		{"trace", tableOut, shown},
		{"trace's stderr", tableErr, shown},
		{"sockets", socks.stdout, shown + "/"},
		{"report", report.stdout, shown},
		{"diagnose", diag.stdout, "port_exhaustion"},
	} {
		assertNoRaw(t, c.what, c.out)
		if !strings.Contains(c.out, c.want) {
			t.Errorf("%s lacks %q:\n%s", c.what, c.want, c.out)
		}
	}
	for _, r := range []cliResult{socks, report, diag} {
		assertNoRaw(t, "stderr", r.stderr)
	}
	// The namespace's name, quoted as bash reads it back: $'...\x1b]0;PWN\a'.
	quoted := fmt.Sprintf("ip netns exec $'%s' ss -tan", strings.TrimSuffix(name, hostile)+shown)
	for _, out := range []string{report.stdout, diag.stdout} {
		if !strings.Contains(out, "verify: "+quoted) {
			t.Errorf("the verify command does not quote the namespace as %q:\n%s", quoted, out)
		}
	}
	// JSON keeps the name exactly.
	var comms int
	for _, e := range jsonLines[jsonEvent](t, jsonOut) {
		if e.Comm == hostile {
			comms++
		}
	}
	if comms == 0 || bytes.ContainsAny([]byte(jsonOut), rawBytes) {
		t.Errorf("JSON: %d lines name the process exactly; raw bytes: %v", comms, bytes.ContainsAny([]byte(jsonOut), rawBytes))
	}
}
