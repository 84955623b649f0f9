package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestARecordingMadeBeforeWireTypesReportsAndReplaysUnchanged reads recording/testdata/golden-v2.rec,
// a file of every block type written by sockscope 7352828 (before the recording had wire types
// of its own), with every command that reads recordings, and compares what each prints with
// what sockscope 7352828 printed for it (testdata/golden-v2/, made by that binary). The one edit
// since is deliberate and mechanical: trace's JSON gained latency_ns (latency_us times 1,000 for
// these records). No privileges needed.
func TestARecordingMadeBeforeWireTypesReportsAndReplaysUnchanged(t *testing.T) {
	const file = "../../recording/testdata/golden-v2.rec"
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"report", []string{"report", file}},
		{"report-json", []string{"report", "-o", "json", file}},
		{"report-top1", []string{"report", "--top", "1", file}},
		{"diagnose", []string{"diagnose", "-r", file}},
		{"diagnose-json", []string{"diagnose", "-o", "json", "-r", file}},
		{"syscalls", []string{"syscalls", "-r", file}},
		{"syscalls-latency-paths", []string{"syscalls", "--latency", "--paths", "-r", file}},
		{"syscalls-interval-json", []string{"syscalls", "--interval", "2s", "-o", "json", "-r", file}},
		{"syscalls-pid", []string{"syscalls", "--pid", "2301", "--paths", "-r", file}},
		{"trace", []string{"trace", "-r", file}},
		{"trace-json", []string{"trace", "-o", "json", "-r", file}},
		{"sockets", []string{"sockets", "-r", file}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", "golden-v2", tc.name+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(sockscopeBin, tc.args...)
			cmd.Env = append(os.Environ(), "TZ=UTC") // the golden times are UTC
			r := runCmd(t, 30*time.Second, cmd)
			if r.code != 0 {
				t.Fatalf("exit status %d; stderr:\n%s", r.code, r.stderr)
			}
			if got := r.stdout + "--- stderr ---\n" + r.stderr; got != string(want) {
				t.Errorf("sockscope %v prints\n%s\nsockscope 7352828 printed\n%s", tc.args, got, want)
			}
		})
	}
}
