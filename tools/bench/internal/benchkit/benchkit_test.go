package benchkit

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

func TestMedian(t *testing.T) {
	if m := Median([]float64{5, 1, 3}); m != 3 {
		t.Errorf("odd median %v", m)
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("even median %v", m)
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("empty median")
	}
	v := []float64{3, 1, 2}
	Median(v)
	if v[0] != 3 || v[1] != 1 || v[2] != 2 {
		t.Errorf("Median sorted its argument: %v", v)
	}
}

func TestMinMax(t *testing.T) {
	if lo, hi := MinMax([]float64{2, -1, 7, 3}); lo != -1 || hi != 7 {
		t.Errorf("got %v %v", lo, hi)
	}
	if lo, hi := MinMax([]float64{4}); lo != 4 || hi != 4 {
		t.Errorf("one value: %v %v", lo, hi)
	}
	if lo, hi := MinMax(nil); !math.IsNaN(lo) || !math.IsNaN(hi) {
		t.Errorf("none: %v %v", lo, hi)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4500: "-4,500", -1234567: "-1,234,567"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestUnits(t *testing.T) {
	if v := RSSMB(20000); v != 20.48 {
		t.Errorf("RSSMB %v", v)
	}
	if v := Millis(1500 * time.Microsecond); v != 1.5 {
		t.Errorf("Millis %v", v)
	}
	if Verdict(true) != "yes" || Verdict(false) != "**no**" {
		t.Error("Verdict")
	}
}

func TestLastLine(t *testing.T) {
	for in, want := range map[string]string{"": "", "one": "one", "a\nb\n": "b", "  a\n b \n\n": " b"} {
		if got := LastLine(in); got != want {
			t.Errorf("LastLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTail(t *testing.T) {
	var tail Tail
	if got := tail.String(); got != "(no stderr output)" {
		t.Errorf("empty: %q", got)
	}
	for i := range 12 {
		tail.Add(fmt.Sprint(i))
	}
	if got := tail.String(); got != "2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11" {
		t.Errorf("got %q", got)
	}
}

func TestShortArgs(t *testing.T) {
	if got := shortArgs([]string{"a", "b"}); got != "a b" {
		t.Errorf("short: %q", got)
	}
	if got := shortArgs(strings.Fields("rm -f 1 2 3 4 5 6 7")); got != "rm -f 1 2 … 6 7" {
		t.Errorf("long: %q", got)
	}
}

func TestParseStorm(t *testing.T) {
	r, err := parseStorm("warming up\n" + `{"connections":100,"seconds":2,"per_second":50,"total":120,"errors":{"ECONNREFUSED":1},"max_conn_ms":3.5}` + "\n")
	if err != nil || r.Connections != 100 || r.PerSecond != 50 || r.Total != 120 || r.Errors["ECONNREFUSED"] != 1 || r.MaxConnMS != 3.5 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"", "not json", `{"seconds":0}`} {
		if _, err := parseStorm(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestRun(t *testing.T) {
	out, err := Run(10*time.Second, "sh", "-c", "echo out")
	if err != nil || out != "out\n" {
		t.Fatalf("%q %v", out, err)
	}
	_, err = Run(10*time.Second, "sh", "-c", "echo first >&2; echo last >&2; exit 3")
	if err == nil || !strings.HasSuffix(err.Error(), ": exit status 3: last") {
		t.Errorf("error %v", err)
	}
	start := time.Now()
	_, err = Run(100*time.Millisecond, "sleep", "10")
	if err == nil || !strings.Contains(err.Error(), "sleep did not exit within 100ms (killed)") || time.Since(start) > 5*time.Second {
		t.Errorf("timeout: %v after %v", err, time.Since(start))
	}
}

func TestExecutable(t *testing.T) {
	dir := t.TempDir()
	exe, plain := filepath.Join(dir, "exe"), filepath.Join(dir, "plain")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(plain, []byte("x"), 0o644)
	if got, err := Executable(exe); err != nil || got != exe {
		t.Errorf("exe: %q %v", got, err)
	}
	if got, err := Executable("sh"); err != nil || !filepath.IsAbs(got) {
		t.Errorf("sh on PATH: %q %v", got, err)
	}
	for _, bad := range []string{plain, dir, filepath.Join(dir, "missing")} {
		if _, err := Executable(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if err := NeedOnPath("sh", "no-such-command-here"); err == nil || err.Error() != "needs no-such-command-here on PATH" {
		t.Errorf("NeedOnPath: %v", err)
	}
}

func TestWriteNotes(t *testing.T) {
	var b strings.Builder
	WriteNotes(&b, nil)
	if b.Len() != 0 {
		t.Errorf("no notes: %q", b.String())
	}
	WriteNotes(&b, []string{"One.", "Two 100%."})
	if got, want := b.String(), "Notes:\n- One.\n- Two 100%.\n\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFdinfoIDs(t *testing.T) {
	// Regular files have "ino:" in their fdinfo (Linux 5.14 on): the same file open twice is
	// listed once.
	path := filepath.Join(t.TempDir(), "f")
	f1, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	f2, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	b, _ := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", f1.Fd()))
	if !strings.Contains(string(b), "\nino:") {
		t.Skip("no ino in fdinfo")
	}
	st, err := f1.Stat()
	if err != nil {
		t.Fatal(err)
	}
	ino := st.Sys().(*syscall.Stat_t).Ino
	if ino > math.MaxUint32 {
		t.Skipf("inode %d does not fit 32 bits", ino)
	}
	n := 0
	for _, id := range FdinfoIDs(os.Getpid(), "ino") {
		if uint64(id) == ino {
			n++
		}
	}
	if n != 1 {
		t.Errorf("inode %d listed %d times", ino, n)
	}
	if ids := FdinfoIDs(os.Getpid(), "prog_id"); len(ids) != 0 {
		t.Errorf("prog ids of a process without BPF programs: %v", ids)
	}
	if ids := FdinfoIDs(-1, "ino"); ids != nil {
		t.Errorf("no such process: %v", ids)
	}
}

// TestRunCleanups is the only test that calls RunCleanups: the cleanups run once per process.
func TestRunCleanups(t *testing.T) {
	var order []int
	AtExit(func() { order = append(order, 1) })
	AtExit(func() { order = append(order, 2) })
	RunCleanups()
	RunCleanups()
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Errorf("order %v", order)
	}
}

func TestInProgram(t *testing.T) {
	before := map[ebpf.ProgramID]ProgRun{
		1: {Name: "on_enter", Runtime: 1000, Runs: 10},
		2: {Name: "on_exit", Runtime: 5000, Runs: 20},
		3: {Name: "on_state", Runtime: 700, Runs: 7},
	}
	after := map[ebpf.ProgramID]ProgRun{
		1: {Name: "on_enter", Runtime: 1000 + 40*1000, Runs: 10 + 1000},
		2: {Name: "on_exit", Runtime: 5000 + 110*1002, Runs: 20 + 1002},
		3: {Name: "on_state", Runtime: 700 + 500, Runs: 7 + 5}, // ran too few times: another hook
		4: {Name: "new", Runtime: 1e6, Runs: 5000},             // loaded after the first snapshot
	}
	ns, names := InProgram(before, after, 1000)
	slices.Sort(names)
	if ns != 150 || !slices.Equal(names, []string{"on_enter", "on_exit"}) {
		t.Errorf("InProgram = %v %v, want 150 [on_enter on_exit]", ns, names)
	}
}

func TestEmitWritesTheReportWhereAsked(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report.md")
	if err := Emit("| a |\n", out); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "| a |\n" {
		t.Errorf("report file %q (%v), want %q", b, err, "| a |\n")
	}
	if err := Emit("x\n", filepath.Join(t.TempDir(), "no", "such", "dir", "r.md")); err == nil {
		t.Error("writing into a missing directory did not fail")
	}
}
