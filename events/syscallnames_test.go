package events

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sockscope/sockscope/internal/testenv"
)

func TestSyscallKnownNumbers(t *testing.T) {
	for _, tc := range []struct {
		arch string
		want map[string]uint32
	}{
		{"amd64", map[string]uint32{
			"read": 0, "write": 1, "open": 2, "close": 3, "fsync": 74, "unlink": 87, "rename": 82,
			"getppid": 110, "connect": 42, "accept": 43, "accept4": 288, "openat": 257,
			"unlinkat": 263, "renameat": 264, "renameat2": 316, "openat2": 437, "exit_group": 231,
			"clone3": 435, "newfstatat": 262, "futex": 202, "getrlimit": 97, "setrlimit": 160,
			"prlimit64": 302,
		}},
		{"arm64", map[string]uint32{
			"io_setup": 0, "openat": 56, "close": 57, "read": 63, "write": 64, "fsync": 82,
			"exit_group": 94, "getppid": 173, "socket": 198, "connect": 203, "accept": 202,
			"accept4": 242, "unlinkat": 35, "renameat": 38, "renameat2": 276, "openat2": 437,
			"clone3": 435, "newfstatat": 79, "fstat": 80, "getrlimit": 163, "setrlimit": 164,
			"prlimit64": 261, "lseek": 62, "fcntl": 25, "fstatfs": 44, "mmap": 222,
			"fadvise64": 223, "futex": 98, "memfd_secret": 447, "clock_gettime": 113,
		}},
	} {
		for name, nr := range tc.want {
			if got := SyscallName(tc.arch, nr); got != name {
				t.Errorf("SyscallName(%s, %d) = %q, want %q", tc.arch, nr, got, name)
			}
			if got, ok := SyscallNumber(tc.arch, name); !ok || got != nr {
				t.Errorf("SyscallNumber(%s, %q) = %d, %v; want %d, true", tc.arch, name, got, ok, nr)
			}
		}
	}
	// The aliases name the same tables.
	if SyscallName("x86_64", 257) != "openat" || SyscallName("aarch64", 56) != "openat" {
		t.Error("x86_64/aarch64 aliases do not resolve")
	}
}

func TestSyscallMissing(t *testing.T) {
	// arm64 (asm-generic) only has the *at variants, and no 32-bit-only calls.
	for _, name := range []string{"open", "unlink", "rename", "stat", "lstat", "creat", "mkdir",
		"rmdir", "access", "pipe", "dup2", "poll", "select", "epoll_wait", "fork", "vfork",
		"chmod", "chown", "link", "symlink", "readlink", "time", "alarm", "pause",
		"clock_gettime64", "fcntl64", "llseek", "mmap2", "sync_file_range2", "syscalls",
		"arch_specific_syscall", ""} {
		if nr, ok := SyscallNumber("arm64", name); ok {
			t.Errorf("SyscallNumber(arm64, %q) = %d, true; want ok=false", name, nr)
		}
	}
	for _, name := range []string{"syscalls", "io_pgetevents_time64", "nonexistent", ""} {
		if nr, ok := SyscallNumber("amd64", name); ok {
			t.Errorf("SyscallNumber(amd64, %q) = %d, true; want ok=false", name, nr)
		}
	}
	if nr, ok := SyscallNumber("riscv64", "openat"); ok {
		t.Errorf("SyscallNumber on an unknown arch = %d, true", nr)
	}
	for _, tc := range []struct {
		arch string
		nr   uint32
		want string
	}{
		{"amd64", 335, "syscall_335"}, // unassigned gap 335-423
		{"amd64", 423, "syscall_423"},
		{"amd64", 100000, "syscall_100000"},
		{"amd64", ^uint32(0), "invalid"},   // the kernel side's row for every number it has no syscall for
		{"amd64", ^uint32(0) - 1, "other"}, // the kernel side's row for a namespace's calls past its budget
		{"arm64", ^uint32(0), "invalid"},
		{"amd64", ^uint32(0) - 2, "syscall_4294967293"},
		{"arm64", 244, "syscall_244"}, // arch-specific range, unused on arm64
		{"arm64", 259, "syscall_259"},
		{"arm64", 403, "syscall_403"}, // *_time64: 32-bit only
		{"arm64", 423, "syscall_423"},
		{"arm64", 4096, "syscall_4096"},
		{"riscv64", 56, "syscall_56"},
		{"", 0, "syscall_0"},
	} {
		if got := SyscallName(tc.arch, tc.nr); got != tc.want {
			t.Errorf("SyscallName(%q, %d) = %q, want %q", tc.arch, tc.nr, got, tc.want)
		}
	}
	if SyscallNames("riscv64") != nil {
		t.Error("SyscallNames of an unknown arch is not nil")
	}
}

func TestSyscallRoundTrip(t *testing.T) {
	for arch, table := range map[string][]string{"amd64": syscallNamesAMD64[:], "arm64": syscallNamesARM64[:]} {
		names := SyscallNames(arch)
		if !slices.IsSorted(names) {
			t.Errorf("%s: SyscallNames is not sorted", arch)
		}
		if len(names) < 290 {
			t.Errorf("%s: only %d names", arch, len(names))
		}
		seen := make(map[string]bool)
		for _, name := range names {
			if seen[name] {
				t.Errorf("%s: %q listed twice", arch, name)
			}
			seen[name] = true
			nr, ok := SyscallNumber(arch, name)
			if !ok {
				t.Errorf("%s: SyscallNumber(%q) not found", arch, name)
				continue
			}
			if back := SyscallName(arch, nr); back != name {
				t.Errorf("%s: %q -> %d -> %q", arch, name, nr, back)
			}
		}
		n := 0
		for nr, name := range table {
			if name == "" {
				continue
			}
			n++
			if got, ok := SyscallNumber(arch, name); !ok || got != uint32(nr) {
				t.Errorf("%s: table[%d] = %q but SyscallNumber = %d, %v", arch, nr, name, got, ok)
			}
		}
		if n != len(names) {
			t.Errorf("%s: table has %d names, SyscallNames %d", arch, n, len(names))
		}
		// The caller owns the returned slice.
		names[0] = "clobbered"
		if SyscallNames(arch)[0] == "clobbered" {
			t.Errorf("%s: SyscallNames returns shared storage", arch)
		}
	}
}

func TestSyscallNameAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		_ = SyscallName("arm64", 56)
		_, _ = SyscallNumber("amd64", "openat")
	}); n != 0 {
		t.Errorf("lookups of known calls allocate %v times", n)
	}
}

// TestSyscallTablesCurrent regenerates syscallnames_gen.go from the installed headers and
// compares it with the committed file.
func TestSyscallTablesCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs ../tools/gen/syscalls")
	}
	goCmd := testenv.Command(t, "go")
	dir := t.TempDir()
	// Built rather than `go run`, which turns every failure into exit status 1.
	gen := filepath.Join(dir, "gensyscalls")
	if b, err := exec.Command(goCmd, "build", "-o", gen, "../tools/gen/syscalls").CombinedOutput(); err != nil {
		t.Fatalf("go build ../tools/gen/syscalls: %v\n%s", err, b)
	}
	out := filepath.Join(dir, "syscallnames_gen.go")
	stderr, err := exec.Command(gen, "-out", out).CombinedOutput()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
		// Headers or the C preprocessor are missing (install linux-libc-dev and gcc).
		syscallTestMissing(t, "%s", strings.TrimSpace(string(stderr)))
	}
	if err != nil {
		t.Fatalf("gensyscalls: %v\n%s", err, stderr)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("syscallnames_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, committed) {
		return
	}
	if m := regexp.MustCompile(`syscallHeadersVersion = "([^"]*)"`).FindSubmatch(got); m != nil && string(m[1]) != syscallHeadersVersion {
		syscallTestMissing(t, "the installed UAPI headers are Linux %s, syscallnames_gen.go was generated from %s; "+
			"run go generate ./events to regenerate from these", m[1], syscallHeadersVersion)
	}
	t.Errorf("syscallnames_gen.go is stale (the headers give different tables): run go generate ./events")
}

// syscallTestMissing skips (fails in CI, like internal/testenv) when a prerequisite is missing.
func syscallTestMissing(t *testing.T, format string, args ...any) {
	t.Helper()
	if testenv.InCI() {
		t.Fatalf("prerequisite missing (CI=true, so this fails instead of skipping): "+format, args...)
	}
	t.Skipf("skipped: "+format, args...)
}
