package stacks

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

// nodeRun samples testdata/opener.js under node with flags and returns the resolved stacks.
func nodeRun(t *testing.T, flags ...string) []*Stack {
	t.Helper()
	testenv.Root(t)
	node := testenv.Command(t, "node")
	dir := t.TempDir()
	script, err := filepath.Abs("testdata/opener.js")
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, flags...), script, dir)
	// In dir: with these flags V8 also writes an isolate-*-v8.log into its working directory.
	p := startTracedIn(t, dir, node, args...)
	samples, done := capture(t, p.pid, p.stdin, p.out)
	if done != "done 300" {
		t.Fatalf("node said %q, want \"done 300\"", done)
	}
	if len(samples) != 300 {
		t.Fatalf("%d openat calls sampled on node's main thread, want 300", len(samples))
	}
	u := New(Options{})
	defer u.Close()
	var out []*Stack
	start := time.Now()
	var first time.Duration
	for i, c := range samples {
		st, err := u.Resolve(toSample(t, c))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = time.Since(start)
		}
		out = append(out, st)
	}
	// For docs/performance.md: the first stack pays for reading node's 98 MB binary (its
	// .eh_frame_hdr, .eh_frame and 107,000-symbol .symtab), libc and the perf map.
	t.Logf("resolved 300 stacks in %v, the first (cold) in %v", time.Since(start), first)
	return out
}

func hasFrame(st *Stack, substr string) bool {
	for i := range st.Frames {
		if strings.Contains(st.Frames[i].Name(), substr) {
			return true
		}
	}
	return false
}

func TestNodeJIT(t *testing.T) {
	stacks := nodeRun(t, "--perf-basic-prof", "--interpreted-frames-native-stack")
	named := 0
	for i, st := range stacks {
		if hasFrame(st, "writeTempFile") && hasFrame(st, "fillDirectory") {
			named++
		} else if named == i && i < 2 {
			t.Errorf("sample %d:%s", i, describe(st))
		}
		if i == 0 || i == 299 {
			t.Logf("sample %d:%s", i, describe(st))
		}
	}
	if named != 300 {
		t.Errorf("%d of 300 stacks name writeTempFile and fillDirectory", named)
	}
}

// TestNodeJITBasicProf is node with --perf-basic-prof alone. V8 writes perf map lines only for
// code objects it generates; a function still run by the bytecode interpreter has none: its frame
// is the interpreter's shared builtin, named Builtin:InterpreterEntryTrampoline, whichever
// function it runs. So the first calls, until V8 compiles writeTempFile (Sparkplug, "^"), cannot
// be told apart by name; --interpreted-frames-native-stack gives each interpreted function its
// own copy of the trampoline, and a name (TestNodeJIT).
func TestNodeJITBasicProf(t *testing.T) {
	stacks := nodeRun(t, "--perf-basic-prof")
	named, interpreted := 0, 0
	for i, st := range stacks {
		switch {
		case st.Truncated:
			t.Errorf("sample %d truncated:%s", i, describe(st))
		case hasFrame(st, "writeTempFile"):
			named++
		case hasFrame(st, "Builtin:InterpreterEntryTrampoline"):
			interpreted++
		default:
			t.Errorf("sample %d names neither writeTempFile nor the interpreter:%s", i, describe(st))
		}
	}
	t.Logf("%d stacks name writeTempFile, %d show the interpreter", named, interpreted)
	if named+interpreted != 300 || named == 0 || interpreted == 0 {
		t.Errorf("%d named + %d interpreted, want 300 with both kinds", named, interpreted)
	}
}
