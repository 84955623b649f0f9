package main

// Files written as root: record never writes through a link an unprivileged user planted, and a
// signal (SIGHUP too: a dropped SSH session) leaves a complete file and no temporary one.

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/recording"
)

// plantTarget is what a link planted in the output directory points to.
func plantTarget(t *testing.T) string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(target, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return target
}

func assertUntouched(t *testing.T, target string) {
	t.Helper()
	if b, err := os.ReadFile(target); err != nil || string(b) != "root:secret\n" {
		t.Errorf("root wrote through the link: %s now holds %q (%v)", target, b, err)
	}
}

// loadEnded reads a recording and returns its end block.
func loadEnded(t *testing.T, path string) *recording.End {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	rec, err := recording.Open(f, st.Size(), recording.DefaultBudget)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rec.End
}

// A symlink at FILE, with and without --force: one line, exit 1, the target as it was. At
// FILE.1 at the start of a rotating recording: the same. Planted at FILE.1 while recording: the
// rotation ends the recording with one line, FILE complete with its end block.
func TestRecordNeverWritesThroughASymlink(t *testing.T) {
	requireTracing(t)
	dir := t.TempDir()
	target := plantTarget(t)
	file := filepath.Join(dir, "incident.rec")
	if err := os.Symlink(target, file); err != nil {
		t.Fatal(err)
	}
	for _, force := range [][]string{nil, {"--force"}} {
		r := runSockscope(t, append([]string{"record", "-w", file, "--duration", "1s"}, force...)...)
		assertFailure(t, r, file, "is a symbolic link")
		assertUntouched(t, target)
	}
	os.Remove(file)
	os.Symlink(target, file+".1")
	for _, force := range [][]string{nil, {"--force"}} {
		r := runSockscope(t, append([]string{"record", "-w", file, "--duration", "1s", "--max-size", "64K"}, force...)...)
		assertFailure(t, r, file+".1 is a symbolic link")
		assertUntouched(t, target)
	}
	os.Remove(file + ".1")

	// Traffic in a namespace of the test fills 64 KiB in a few seconds; the link is planted
	// once the recording runs.
	ns := newNetns(t)
	rec := startAttachedEnv(t, nil, "record", "-w", file, "--netns", ns.path, "--syscalls=false", "--max-size", "64K", "--interval", "200ms")
	if err := os.Symlink(target, file+".1"); err != nil {
		t.Fatal(err)
	}
	srv := ns.serve(t, "-addr", "127.0.0.1:8080")
	defer srv.halt()
	deadline := time.Now().Add(60 * time.Second)
	for rec.running() && time.Now().Before(deadline) {
		ns.tcpload(t, "connect", "-addr", "127.0.0.1:8080", "-n", "500")
	}
	r := rec.wait(t)
	assertFailure(t, r, file+".1 is a symbolic link", "rotating "+file)
	assertUntouched(t, target)
	if end := loadEnded(t, file); end == nil || !strings.Contains(end.Reason, "symbolic link") {
		t.Errorf("%s ends with %+v, want the error", file, end)
	}
}

// SIGHUP, as a dropped SSH session sends it: record ends the file as on Ctrl-C; live diagnose
// finishes its file, diagnoses it and leaves no directory behind.
func TestSIGHUPEndsTheRecordingCleanly(t *testing.T) {
	requireTracing(t)
	rec, file := startRecord(t)
	time.Sleep(time.Second)
	rec.cmd.Process.Signal(syscall.SIGHUP)
	if err := rec.cmd.Wait(); err != nil {
		t.Fatalf("record after SIGHUP: %v\n%s", err, rec.errBuf.String())
	}
	<-rec.done
	if end := loadEnded(t, file); end == nil || end.Reason != "signal" {
		t.Errorf("after SIGHUP the file ends with %+v, want an end block for the signal", end)
	}
	if r := runSockscope(t, "report", file); r.code != 0 {
		t.Errorf("report: exit %d\n%s", r.code, r.stderr)
	}

	tmp := t.TempDir()
	d := startAttachedEnv(t, []string{"TMPDIR=" + tmp}, "diagnose", "--duration", "60s", "--interval", "200ms", "-o", "json")
	if entries, _ := os.ReadDir(tmp); len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "sockscope-diagnose-") {
		t.Fatalf("live diagnose works in %v, want one private directory", entries)
	} else if st, _ := os.Stat(filepath.Join(tmp, entries[0].Name())); st.Mode().Perm() != 0o700 {
		t.Errorf("its directory has mode %v, want 0700", st.Mode().Perm())
	}
	time.Sleep(time.Second)
	d.cmd.Process.Signal(syscall.SIGHUP)
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("diagnose after SIGHUP: %v\n%s", err, d.errBuf.String())
	}
	<-d.done
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("live diagnose left %v in TMPDIR", entries)
	}
	if strings.Contains(d.errBuf.String(), "sockscope: ") && !strings.Contains(d.errBuf.String(), "recorded") {
		t.Logf("stderr:\n%s", d.errBuf.String())
	}
}
