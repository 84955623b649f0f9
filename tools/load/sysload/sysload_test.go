package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockscope/sockscope/internal/testenv"
)

func TestSysload(t *testing.T) {
	goCmd := testenv.Command(t, "go")
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "sysload")
	if b, err := exec.Command(goCmd, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	dir := filepath.Join(tmp, "work", "sub") // created by sysload
	for run := range 2 {                     // the second run finds the files of the first
		cmd := exec.Command(bin, "-dir", dir, "-fsync", "3", "-unlink", "5", "-emfile", "2", "-getppid", "1000", "-invalid", "40000")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("run %d: %v, stderr %q", run, err, stderr.String())
		}
		if strings.Count(string(out), "\n") != 1 {
			t.Fatalf("run %d: want one line, got %q", run, out)
		}
		var s summary
		dec := json.NewDecoder(strings.NewReader(string(out)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("run %d: %v in %q", run, err, out)
		}
		if s.PID != cmd.Process.Pid || s.Fsync != 3 || s.Unlinkat != 5 || s.OpenatEMFILE != 2 || s.Getppid != 1000 || s.Invalid != 40000 {
			t.Errorf("run %d: %+v", run, s)
		}
		// 1024 minus the descriptors already open (stdin, stdout, stderr and whatever the test
		// runner leaves open).
		if s.OpenatOK < 900 || s.OpenatOK > emfileLimit-3 {
			t.Errorf("run %d: openat_ok = %d", run, s.OpenatOK)
		}
		if want := 1 + 5 + s.OpenatOK + 2; s.Openat != want {
			t.Errorf("run %d: openat = %d, want %d", run, s.Openat, want)
		}
		if s.NsPerGetppid <= 0 {
			t.Errorf("run %d: ns_per_getppid = %v", run, s.NsPerGetppid)
		}
		left, _ := filepath.Glob(filepath.Join(dir, "io-file-*"))
		if len(left) != 0 {
			t.Errorf("run %d: files left: %v", run, left)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "fsync-file")); err != nil {
		t.Error(err)
	}

	for _, args := range [][]string{{}, {"-dir", dir, "-fsync", "-1"}, {"-dir", dir, "-invalid", "-1"}, {"-dir", dir, "extra"}} {
		cmd := exec.Command(bin, args...)
		out, err := cmd.Output()
		if err == nil || len(out) != 0 {
			t.Errorf("%q: err %v, stdout %q", args, err, out)
		}
	}
}
