package stacks

// End-to-end tests: real programs, sampled with ptrace at each openat exactly as the BPF program
// will sample them (struct pt_regs and 16 KB of stack from rsp), unwound and named here, counted
// against what the programs do.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockscope/sockscope/internal/testenv"
	"github.com/sockscope/sockscope/stacks/internal/ptcap"
)

// build compiles testdata/src with compiler into dir and returns the binary's path.
func build(t testing.TB, compiler, src, dir, name string, flags ...string) string {
	t.Helper()
	testenv.Command(t, compiler)
	out := filepath.Join(dir, name)
	args := append(append([]string{}, flags...), "-o", out, filepath.Join("testdata", src))
	if b, err := exec.Command(compiler, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", compiler, strings.Join(args, " "), err, b)
	}
	return out
}

// traced is a program that waits for a byte on stdin, works, writes "done ..." to stdout, then
// waits for stdin to close.
type traced struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	pid   int
}

func startTraced(t testing.TB, name string, args ...string) *traced {
	t.Helper()
	return startTracedIn(t, "", name, args...)
}

// startTracedIn starts the program in directory dir ("": this one).
func startTracedIn(t testing.TB, dir, name string, args ...string) *traced {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
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
	p := &traced{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), pid: cmd.Process.Pid}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// capture samples every openat of the program's main thread between the start byte and its
// "done" line, and returns the samples and that line.
func capture(t testing.TB, pid int, stdin io.Writer, out *bufio.Reader) ([]ptcap.Sample, string) {
	t.Helper()
	waitBlockedOnStdin(t, pid)
	samples, err := ptcap.Capture(pid, pid, ptcap.Options{
		Syscall:   unix.SYS_OPENAT,
		StackSize: MaxStackCopy,
		StopAt:    unix.SYS_WRITE,
		StopArg:   1,
		Attached: func() {
			if _, err := stdin.Write([]byte{'g'}); err != nil {
				t.Errorf("start byte: %v", err)
			}
		},
	})
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the program's end line: %v", err)
	}
	return samples, strings.TrimSpace(line)
}

// waitBlockedOnStdin waits until the program's main thread sits in read(0, ...), waiting for its
// start byte: its loading (the dynamic loader's own openat calls, node's startup) is over.
func waitBlockedOnStdin(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(b), fmt.Sprintf("%d 0x0 ", unix.SYS_READ)) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d did not get to read its start byte from stdin in 30 s", pid)
}

// toSample turns a ptrace capture into the sample the BPF side will deliver.
func toSample(t testing.TB, c ptcap.Sample) *Sample {
	t.Helper()
	regs, err := RegsFromPtRegs(AMD64, c.PtRegs)
	if err != nil {
		t.Fatal(err)
	}
	return &Sample{PID: uint32(c.PID), TID: uint32(c.TID), Arch: AMD64, Regs: regs, Stack: c.Stack}
}

func names(st *Stack) []string {
	var out []string
	for i := range st.Frames {
		out = append(out, st.Frames[i].Name())
	}
	return out
}

// inOrder reports whether want appear in names in this order (innermost first), each once.
func inOrder(names []string, want ...string) bool {
	i := 0
	for _, n := range names {
		if i < len(want) && n == want[i] {
			i++
		}
	}
	return i == len(want)
}

func describe(st *Stack) string {
	var b strings.Builder
	for _, f := range st.Frames {
		fmt.Fprintf(&b, "\n  %-40s %s+0x%x via %s (%s)", f.Name(), filepath.Base(f.Module), f.Offset, f.Via, f.Source)
	}
	if st.Truncated {
		fmt.Fprintf(&b, "\n  [truncated: %s]", st.Reason)
	}
	return b.String()
}

// checkOpener checks the 300 stacks of testdata/opener.c: every one complete (to _start), with
// glibc's open wrapper innermost, then write_temp_file, fill_directory and main, named from the
// binary's symbols, each caller found through CFI.
func checkOpener(t *testing.T, u *Unwinder, samples []ptcap.Sample, done string) *Counts {
	t.Helper()
	if done != "done 300" {
		t.Fatalf("the program said %q, want \"done 300\"", done)
	}
	if len(samples) != 300 {
		t.Fatalf("%d openat calls sampled, want 300", len(samples))
	}
	var counts Counts
	good := 0
	for i, c := range samples {
		st, err := u.Resolve(toSample(t, c))
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		n := names(st)
		ok := !st.Truncated && inOrder(n, "write_temp_file", "fill_directory", "main", "_start") &&
			n[len(n)-1] == "_start" && strings.Contains(n[0], "open") && n[1] == "write_temp_file"
		for _, f := range st.Frames[1:] {
			if f.Via != "cfi" {
				ok = false
			}
		}
		if ok {
			good++
		} else if good == i && i < 3 {
			t.Errorf("sample %d:%s", i, describe(st))
		}
		counts.Add([]string{"opener"}, st, 1)
	}
	if good != 300 {
		t.Errorf("%d of 300 stacks have write_temp_file < fill_directory < main < _start through glibc's open", good)
	}
	t.Logf("the stack (%d distinct):%s", len(counts.Sorted()), describe(counts.Sorted()[0].Stack))
	return &counts
}

func TestOpenerC(t *testing.T) {
	testenv.Root(t)
	dir := t.TempDir()
	builds := []struct {
		name  string
		flags []string
	}{
		{"frame-pointers", []string{"-O2", "-fno-omit-frame-pointer"}},
		{"no-frame-pointers", []string{"-O2", "-fomit-frame-pointer"}},
		{"static", []string{"-O2", "-fomit-frame-pointer", "-static"}},
	}
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) {
			bin := build(t, "gcc", "opener.c", dir, "opener-"+b.name, b.flags...)
			p := startTraced(t, bin, dir)
			samples, done := capture(t, p.pid, p.stdin, p.out)
			u := New(Options{})
			defer u.Close()
			counts := checkOpener(t, u, samples, done)

			// The folded line a flame graph gets: one line, all 300.
			var folded strings.Builder
			WriteFolded(&folded, counts.Sorted())
			lines := strings.Split(strings.TrimSpace(folded.String()), "\n")
			if len(lines) != 1 || !strings.HasSuffix(lines[0], ";main;fill_directory;write_temp_file;"+counts.Sorted()[0].Stack.Frames[0].Name()+" 300") || !strings.HasPrefix(lines[0], "opener;") {
				t.Errorf("folded output:\n%s", folded.String())
			}
		})
	}
}

// TestFramePointersAlone shows why CFI is needed even for a program built with frame pointers:
// Debian's glibc is built without them, and its open wrapper uses rbp as an ordinary register
// (it holds the path argument's address there). A frame-pointer walk from the syscall gets
// glibc's open and then nothing it could trust, in every sample: it stops, marked truncated,
// instead of inventing callers from whatever rbp points at.
func TestFramePointersAlone(t *testing.T) {
	testenv.Root(t)
	dir := t.TempDir()
	bin := build(t, "gcc", "opener.c", dir, "opener-fp", "-O2", "-fno-omit-frame-pointer")
	p := startTraced(t, bin, dir)
	samples, done := capture(t, p.pid, p.stdin, p.out)
	if done != "done 300" || len(samples) != 300 {
		t.Fatalf("%q, %d samples", done, len(samples))
	}
	u := New(Options{})
	defer u.Close()
	u.noCFI = true
	cut := 0
	for _, c := range samples {
		st, err := u.Resolve(toSample(t, c))
		if err != nil {
			t.Fatal(err)
		}
		if st.Truncated && len(st.Frames) == 1 && strings.Contains(st.Frames[0].Name(), "open") {
			cut++
		} else if cut == 0 {
			t.Errorf("frame pointers only:%s", describe(st))
		}
	}
	if cut != 300 {
		t.Errorf("frame pointers alone: %d of 300 stacks end truncated after glibc's open, want all", cut)
	}
}

func TestOpenerCXX(t *testing.T) {
	testenv.Root(t)
	dir := t.TempDir()
	bin := build(t, "g++", "opener.cc", dir, "opener-cc", "-O2")
	p := startTraced(t, bin, dir)
	samples, done := capture(t, p.pid, p.stdin, p.out)
	if done != "done 100" || len(samples) != 100 {
		t.Fatalf("%q, %d samples; want done 100 and 100 samples", done, len(samples))
	}
	u := New(Options{})
	defer u.Close()
	good := 0
	for i, c := range samples {
		st, err := u.Resolve(toSample(t, c))
		if err != nil {
			t.Fatal(err)
		}
		n := names(st)
		if !st.Truncated && inOrder(n, "sockscope_test::TempWriter::WriteTempFile(int)", "int sockscope_test::FillDirectory<sockscope_test::TempWriter>(sockscope_test::TempWriter&, int)", "main", "_start") {
			good++
		} else if i == 0 {
			t.Errorf("sample 0:%s", describe(st))
		}
	}
	if good != 100 {
		t.Errorf("%d of 100 C++ stacks demangled and complete", good)
	}
}

// TestNoreturnCall: check_file's return address is past its end; its frame must still be
// check_file, found with check_file's CFI.
func TestNoreturnCall(t *testing.T) {
	testenv.Root(t)
	dir := t.TempDir()
	bin := build(t, "gcc", "noreturn.c", dir, "noreturn", "-O2", "-fomit-frame-pointer", "-fno-reorder-functions")
	p := startTraced(t, bin, dir)
	samples, done := capture(t, p.pid, p.stdin, p.out)
	if done != "done 100" || len(samples) != 100 {
		t.Fatalf("%q, %d samples; want done 100 and 100 samples", done, len(samples))
	}
	u := New(Options{})
	defer u.Close()
	good := 0
	for i, c := range samples {
		st, err := u.Resolve(toSample(t, c))
		if err != nil {
			t.Fatal(err)
		}
		n := names(st)
		if !st.Truncated && inOrder(n, "open_and_leave", "check_file", "main", "_start") {
			good++
		} else if i == 0 {
			t.Errorf("sample 0:%s", describe(st))
		}
		if i == 0 {
			// The precondition that makes this test mean something: the return address into
			// check_file is the end of check_file.
			for _, f := range st.Frames {
				if f.Symbol == "check_file" {
					var ok bool
					if j, found := f.obj.syms.lookup(f.Offset); !found || f.obj.syms.name(j) != "check_file" {
						ok = true
					}
					if !ok {
						t.Errorf("check_file's return address 0x%x is inside check_file: GCC did not end it with the call", f.Offset)
					}
				}
			}
		}
	}
	if good != 100 {
		t.Errorf("%d of 100 stacks through a noreturn call are complete", good)
	}
}
