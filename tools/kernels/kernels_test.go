package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

// A renamed or deleted test must not drop out of the matrix unnoticed: each name is a test
// function of cmd/sockscope (and verdict fails a kernel where one did not run).
func TestMatrixTestsAreTestsOfCmdSockscope(t *testing.T) {
	files, err := filepath.Glob("../../cmd/sockscope/*_test.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in cmd/sockscope: %v", err)
	}
	defined := map[string]bool{}
	re := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			defined[string(m[1])] = true
		}
	}
	for _, name := range allTests() {
		if !defined[name] {
			t.Errorf("matrixTests has %s, which cmd/sockscope does not define", name)
		}
	}
	for name, pkg := range guestBinaries {
		if _, err := os.Stat(filepath.Join("../..", pkg)); err != nil {
			t.Errorf("guest binary %s: package %s: %v", name, pkg, err)
		}
	}
}

func TestParseRunAndVerdict(t *testing.T) {
	const text = `sockscope-kernels: kernel 6.1.0-50-amd64
sockscope-kernels: insmod tcp_diag failed
sockscope-kernels: version
sockscope dev (go1.26.8, linux/amd64)
kernel features:
  BTF (/sys/kernel/btf/vmlinux)  yes
  tcp_send_reset, every reset    no (tcp_send_reset has 2 arguments; Linux 6.10 has it)
container runtimes:
  none found at the well-known sockets: namespaces show their inodes
sockscope-kernels: tests ^(TestA|TestB|TestC)$
=== RUN   TestA
--- PASS: TestA (1.50s)
=== RUN   TestB
=== RUN   TestB/ipv4
    b_test.go:10: got 1, want 2
--- FAIL: TestB (0.25s)
    --- FAIL: TestB/ipv4 (0.20s)
FAIL
sockscope-kernels: exit 1
`
	r := parseRun(text)
	if r.Release != "6.1.0-50-amd64" || r.Version != "sockscope dev (go1.26.8, linux/amd64)" || r.Exit != 1 {
		t.Errorf("release %q, version %q, exit %d", r.Release, r.Version, r.Exit)
	}
	wantFeatures := []feature{
		{"BTF (/sys/kernel/btf/vmlinux)", "yes"},
		{"tcp_send_reset, every reset", "no (tcp_send_reset has 2 arguments; Linux 6.10 has it)"},
	}
	if !slices.Equal(r.Features, wantFeatures) {
		t.Errorf("features %+v, want %+v", r.Features, wantFeatures)
	}
	if !slices.Equal(r.Notes, []string{"insmod tcp_diag failed"}) {
		t.Errorf("notes %q", r.Notes)
	}
	if a, b := r.Tests["TestA"], r.Tests["TestB"]; a != (testResult{"PASS", 1.5}) || b != (testResult{"FAIL", 0.25}) || len(r.Tests) != 2 {
		t.Errorf("tests %+v", r.Tests)
	}
	ok, summary := r.verdict([]string{"TestA", "TestB", "TestC"})
	if ok || summary != "1 of 3 passed; TestB FAIL, TestC did not run, test binary exit status 1" {
		t.Errorf("verdict %v %q", ok, summary)
	}
	if out := r.failedOutput(); !strings.Contains(out, "b_test.go:10: got 1, want 2") || strings.Contains(out, "TestA") {
		t.Errorf("failed output:\n%s", out)
	}

	all := parseRun("sockscope-kernels: tests x\n--- PASS: TestA (0.01s)\nsockscope-kernels: exit 0\n")
	if ok, summary := all.verdict([]string{"TestA"}); !ok || summary != "1 of 1 passed" {
		t.Errorf("verdict %v %q", ok, summary)
	}
	// A guest killed mid-test never says its exit status.
	cut := parseRun("sockscope-kernels: tests x\n--- PASS: TestA (0.01s)\n=== RUN   TestB\n")
	if ok, summary := cut.verdict([]string{"TestA"}); ok || !strings.Contains(summary, "the tests did not finish") {
		t.Errorf("verdict %v %q", ok, summary)
	}
}

func TestParseLdd(t *testing.T) {
	out := []byte(`	linux-vdso.so.1 (0x00007ffd6b1d8000)
	libmnl.so.0 => /lib/x86_64-linux-gnu/libmnl.so.0 (0x00007f0d1c1a1000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0d1bfbd000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f0d1c1e9000)
`)
	want := []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libmnl.so.0", "/lib64/ld-linux-x86-64.so.2"}
	if got := parseLdd(out); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// The archive is read back by another implementation, busybox's cpio: every file, link and
// directory with its contents and mode.
func TestArchiveUnpacksWithBusyboxCpio(t *testing.T) {
	bb := testenv.Command(t, "busybox")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("from a host file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var a archive
	a.bytes("/init", 0o755, []byte("#!/bin/sh\n"))
	a.file("/usr/bin/tool", 0o755, src)
	a.bytes("/lib/modules/6.1.0/load", 0o644, []byte("inet_diag\ntcp_diag\n"))
	a.bytes("/odd", 0o644, []byte("12345")) // a size that needs padding
	a.symlink("/bin/sh", "busybox")
	file := filepath.Join(dir, "root.cpio")
	if err := a.write(file); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	cmd := exec.Command(bb, "cpio", "-i", "-d", "-F", file)
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v\n%s", err, b)
	}
	for p, want := range map[string]string{"init": "#!/bin/sh\n", "usr/bin/tool": "from a host file\n", "lib/modules/6.1.0/load": "inet_diag\ntcp_diag\n", "odd": "12345"} {
		b, err := os.ReadFile(filepath.Join(out, p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}
	if st, err := os.Stat(filepath.Join(out, "usr/bin/tool")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("usr/bin/tool mode: %v %v", st, err)
	}
	if l, err := os.Readlink(filepath.Join(out, "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run"} {
		if st, err := os.Stat(filepath.Join(out, d)); err != nil || !st.IsDir() {
			t.Errorf("no directory /%s: %v", d, err)
		}
	}
	// Same input, same bytes, same cache key.
	k1, _ := a.key()
	a2 := slices.Clone(a)
	k2, _ := a2.key()
	a2.bytes("/more", 0o644, nil)
	k3, _ := a2.key()
	if k1 != k2 || k1 == k3 {
		t.Errorf("keys %s %s %s: want the first two equal and the third different", k1, k2, k3)
	}
}

// fakeQemu writes a script that behaves like a guest that hangs: it writes console to the first
// -serial file and results to the second (printf formats), then sleeps for sleep seconds.
func fakeQemu(t *testing.T, console, results string, sleep int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu")
	script := `#!/bin/sh
n=0
while [ $# -gt 0 ]; do
	if [ "$1" = -serial ]; then
		n=$((n+1)); f=${2#file:}
		[ $n = 1 ] && printf "` + console + `" > "$f"
		[ $n = 2 ] && printf "` + results + `" > "$f"
	fi
	shift
done
exec sleep ` + strconv.Itoa(sleep) + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAGuestThatDoesNotBootOrFinishIsKilledWithItsConsole(t *testing.T) {
	for _, tc := range []struct {
		name, console, want string
	}{
		{"no boot", "Booting the kernel.\\nKernel panic - not syncing: VFS\\n", "did not start its init within 1s"},
		{"hang", "sockscope-kernels: init\\nwatchdog: BUG: soft lockup\\n", "did not finish within 2s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := guest{qemu: fakeQemu(t, tc.console, "sockscope-kernels: tests x\\n=== RUN   TestA\\n", 9), accel: accelTCG,
				dir: t.TempDir(), cpus: 1, memMB: 64, bootTimeout: time.Second, totalTimeout: 2 * time.Second}
			start := time.Now()
			r := g.run(context.Background())
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("killed after %v", took)
			}
			if !r.timedOut || !strings.Contains(r.failure, tc.want) {
				t.Errorf("failure %q (timed out %v), want %q", r.failure, r.timedOut, tc.want)
			}
			if !strings.Contains(r.console, strings.ReplaceAll(tc.console, `\n`, "\n")) {
				t.Errorf("console %q", r.console)
			}
			run := parseRun(r.results)
			if ok, summary := run.verdict([]string{"TestA"}); ok || !strings.Contains(summary, "did not finish") {
				t.Errorf("verdict %v %q", ok, summary)
			}
		})
	}
}

// A pin that the archive no longer has fails with the package's name and apt's reason.
func TestAKernelPackageThatCannotBeDownloadedIsNamed(t *testing.T) {
	bin := t.TempDir()
	apt := `#!/bin/sh
for a in "$@"; do
	case "$a" in
	update) exit 0 ;;
	download) echo "E: Version '6.1.176-1' for 'linux-image-6.1.0-50-amd64' was not found" >&2; exit 100 ;;
	esac
done
`
	if err := os.WriteFile(filepath.Join(bin, "apt-get"), []byte(apt), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	d := &debian{cache: t.TempDir(), mirror: "http://deb.example", log: t.Logf}
	k := kernel{Name: "6.1", Package: "linux-image-6.1.0-50-amd64", Version: "6.1.176-1", Suite: "bookworm"}
	_, err := d.fetch(k, []kernel{k})
	want := "kernel package linux-image-6.1.0-50-amd64=6.1.176-1 cannot be downloaded: Version '6.1.176-1' for 'linux-image-6.1.0-50-amd64' was not found"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if b, _ := os.ReadFile(filepath.Join(d.cache, "apt", "sources.list")); !strings.Contains(string(b), "http://deb.example/debian bookworm main") {
		t.Errorf("sources.list:\n%s", b)
	}
}

func TestMissingQemuFailsUnderCIAndSkipsOtherwise(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	cfg := config{kernels: []string{kernels[0].Name}, tests: matrixTests, repoRoot: "../.."}
	t.Setenv("CI", "true")
	if err := run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "qemu-system-x86_64 is not installed") || !strings.Contains(err.Error(), "CI=true") {
		t.Errorf("CI=true: %v", err)
	}
	t.Setenv("CI", "")
	if err := run(context.Background(), cfg); err != nil {
		t.Errorf("without CI: %v, want a skip", err)
	}
}
