package stacks

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sockscope/sockscope/internal/testenv"
	"github.com/sockscope/sockscope/stacks/internal/ptcap"
)

// libSource is one of the 100 libraries: a few functions, so that each has a symbol table and
// CFI of its own, and an exported lib_N_open that opens a file two calls deep.
const libSource = `#include <fcntl.h>
#include <unistd.h>
__attribute__((noinline)) int lib_%[1]d_helper_a(int x) { return x * %[1]d + 1; }
__attribute__((noinline)) int lib_%[1]d_helper_b(int x) { return lib_%[1]d_helper_a(x) ^ %[1]d; }
__attribute__((noinline)) static int lib_%[1]d_inner(const char *p)
{
	int fd = open(p, O_RDONLY | O_DIRECTORY);
	if (fd >= 0)
		close(fd);
	return fd;
}
int lib_%[1]d_open(const char *p)
{
	int fd = lib_%[1]d_inner(p);
	return fd < 0 ? fd : fd + (lib_%[1]d_helper_b(fd) & 0);
}
`

// manyLibs builds the 100 libraries and the program that loads them, runs it and samples its 100
// openat calls, one from each library.
func manyLibs(b *testing.B) []ptcap.Sample {
	b.Helper()
	testenv.Root(b)
	testenv.Command(b, "gcc")
	dir := b.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	sem := make(chan struct{}, 4)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			src := filepath.Join(dir, fmt.Sprintf("lib%d.c", i))
			if err := os.WriteFile(src, []byte(fmt.Sprintf(libSource, i)), 0o644); err != nil {
				errs <- err
				return
			}
			if out, err := exec.Command("gcc", "-O2", "-shared", "-fPIC", "-o", filepath.Join(dir, fmt.Sprintf("lib%d.so", i)), src).CombinedOutput(); err != nil {
				errs <- fmt.Errorf("%v: %s", err, out)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	bin := build(b, "gcc", "manylibs.c", dir, "manylibs", "-O2")
	p := startTraced(b, bin, dir)
	samples, done := capture(b, p.pid, p.stdin, p.out)
	if done != "done 100" || len(samples) != 100 {
		b.Fatalf("%q, %d samples; want done 100 and 100 samples", done, len(samples))
	}
	// What is timed must be the real work: every stack complete and through its own library.
	u := New(Options{})
	defer u.Close()
	libs := map[string]bool{}
	for i, c := range samples {
		st, err := u.Resolve(toSample(b, c))
		if err != nil {
			b.Fatal(err)
		}
		n := names(st)
		if st.Truncated || !inOrder(n, fmt.Sprintf("lib_%d_inner", i), fmt.Sprintf("lib_%d_open", i), "main", "_start") {
			b.Fatalf("sample %d:%s", i, describe(st))
		}
		libs[st.Frames[1].Module] = true
	}
	if len(libs) != 100 {
		b.Fatalf("%d libraries in the stacks, want 100", len(libs))
	}
	maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", p.pid))
	b.Logf("the process maps %d files", countFiles(string(maps)))
	return samples
}

func countFiles(maps string) int {
	files := map[string]bool{}
	for _, line := range strings.Split(maps, "\n") {
		if i := strings.Index(line, " /"); i >= 0 {
			files[strings.TrimSpace(line[i:])] = true
		}
	}
	return len(files)
}

// BenchmarkSymbolize100Libs resolves (unwinds and names) the 100 stacks of a process with 100
// libraries, one op being all 100 stacks. cold: a new Unwinder each time, so every library is
// opened and its headers, CFI and symbols read again (the kernel's page cache stays warm);
// warm: the same Unwinder, everything cached.
func BenchmarkSymbolize100Libs(b *testing.B) {
	samples := manyLibs(b)
	ss := make([]*Sample, len(samples))
	for i, c := range samples {
		ss[i] = toSample(b, c)
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			u := New(Options{})
			for _, s := range ss {
				if _, err := u.Resolve(s); err != nil {
					b.Fatal(err)
				}
			}
			u.Close()
		}
	})
	b.Run("warm", func(b *testing.B) {
		u := New(Options{})
		defer u.Close()
		for _, s := range ss {
			u.Resolve(s)
		}
		for b.Loop() {
			for _, s := range ss {
				if _, err := u.Resolve(s); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("warm-unwind-only", func(b *testing.B) {
		u := New(Options{})
		defer u.Close()
		for _, s := range ss {
			u.Resolve(s)
		}
		for b.Loop() {
			for _, s := range ss {
				if _, err := u.Unwind(s); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
