// Command kernels runs sockscope's kernel matrix (`make kernels`): the privileged end-to-end
// tests of matrixTests on this machine's kernel natively, and on each pinned Debian kernel in a
// qemu guest, then reports per kernel and per test.
//
//	kernels [-kernels 5.10,6.1,6.12-cloud] [-tests T1,T2] [-host=true] [-accel auto|kvm|tcg] [-timeout 5m]
//	        [-cache DIR] [-work bin/kernels] [-out bin/kernels/report.md] [-mirror URL]
//
// Each guest boots the kernel of a Debian package (downloaded once with apt-get, pinned by
// version in debian.go, cached under -cache) with an initramfs that holds busybox, iproute2,
// procps's sysctl and Prometheus from this machine, and the static sockscope binaries and
// cmd/sockscope test binary built for this run. Its init runs `sockscope version` and the
// tests, writes their output to a second serial port, and powers off. qemu uses KVM when
// /dev/kvm works and TCG otherwise; a guest that does not boot, or does not finish, within its
// timeout is killed and the tail of its console printed.
//
// A kernel package that cannot be downloaded fails the run with the package's name. Without
// qemu, or on a machine that is not x86_64, the matrix fails under CI=true and is skipped with
// a message otherwise. Exit status: 0 every kernel passed (or skipped outside CI), 1 a kernel
// failed or the matrix could not run, 2 bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

type config struct {
	kernels  []string
	tests    []string
	host     bool
	accel    string
	timeout  time.Duration
	boot     time.Duration
	cache    string
	work     string
	out      string
	mirror   string
	cpus     int
	memMB    int
	repoRoot string
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "kernels: %v\n", err)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "kernels: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	cfg := config{}
	fs := flag.NewFlagSet("kernels", flag.ContinueOnError)
	var names string
	var all []string
	for _, k := range kernels {
		all = append(all, k.Name)
	}
	fs.StringVar(&names, "kernels", strings.Join(all, ","), "the Debian kernels to boot, by name (empty: none)")
	var tests string
	fs.StringVar(&tests, "tests", strings.Join(allTests(), ","), "run only these of the matrix's tests (to debug one)")
	fs.BoolVar(&cfg.host, "host", true, "also run the tests natively on this machine's kernel")
	fs.StringVar(&cfg.accel, "accel", "auto", "qemu accelerator: auto (KVM if it works, else TCG), kvm or tcg")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "per kernel: boot, tests and power-off")
	fs.DurationVar(&cfg.boot, "boot-timeout", 2*time.Minute, "per kernel: until the guest's init runs")
	fs.StringVar(&cfg.cache, "cache", defaultCache(), "kernel packages and the guest's tools, kept between runs")
	fs.StringVar(&cfg.work, "work", "bin/kernels", "this run's binaries, initramfs and guest logs")
	fs.StringVar(&cfg.out, "out", "", "write the report (markdown) here too (default: WORK/report.md)")
	fs.StringVar(&cfg.mirror, "mirror", "http://deb.debian.org", "Debian mirror for the kernel packages")
	// One vCPU: the matrix proves the kernel side (verifier, hooks, BTF) on each kernel; races
	// between CPUs are the host's to find, natively. Two vCPUs under TCG turned the kernel's own
	// SMP races into test noise (two CPUs creating a child for one request socket, one thrown
	// away as SYN_RECV -> CLOSE, counted by no MIB), at no gain in speed.
	fs.IntVar(&cfg.cpus, "cpus", 1, "guest vCPUs")
	fs.IntVar(&cfg.memMB, "mem", 2048, "guest memory, MiB")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, n := range strings.Split(names, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.Contains(all, n) {
			return cfg, fmt.Errorf("-kernels: unknown kernel %q (known: %s)", n, strings.Join(all, ", "))
		}
		cfg.kernels = append(cfg.kernels, n)
	}
	for _, n := range strings.Split(tests, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.Contains(allTests(), n) {
			return cfg, fmt.Errorf("-tests: %q is not one of the matrix's tests (tools/kernels/subset.go)", n)
		}
		cfg.tests = append(cfg.tests, n)
	}
	if len(cfg.tests) == 0 {
		return cfg, fmt.Errorf("-tests: no test selected")
	}
	if cfg.accel != "auto" && cfg.accel != "kvm" && cfg.accel != "tcg" {
		return cfg, fmt.Errorf("-accel must be auto, kvm or tcg, not %q", cfg.accel)
	}
	if cfg.timeout <= time.Minute {
		return cfg, fmt.Errorf("-timeout must be more than 1m (the guest's tests get it less a minute)")
	}
	if cfg.out == "" {
		cfg.out = filepath.Join(cfg.work, "report.md")
	}
	return cfg, nil
}

// defaultCache is $SOCKSCOPE_CACHE/kernels, else ~/.cache/sockscope/kernels.
func defaultCache() string {
	if d := os.Getenv("SOCKSCOPE_CACHE"); d != "" {
		return filepath.Join(d, "kernels")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "sockscope", "kernels")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kernels: "+format+"\n", args...)
}

// unavailable fails under CI and skips otherwise: the matrix cannot run on this machine.
func unavailable(reason string) error {
	if testenv.InCI() {
		return fmt.Errorf("%s (CI=true, so the kernel matrix fails instead of skipping)", reason)
	}
	logf("skipped: %s", reason)
	return nil
}

// row is one kernel's line in the report.
type row struct {
	Name    string // "host" or the kernel's Name
	Package string // "this machine" or PACKAGE VERSION
	Where   string // "native", "qemu TCG", "qemu KVM"
	Run     outcome
	OK      bool
	Summary string
	Boot    time.Duration
	Took    time.Duration
	Skipped string
	Tests   []string // what it ran
}

func run(ctx context.Context, cfg config) error {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return unavailable(fmt.Sprintf("the matrix boots Debian's amd64 kernels; this is %s/%s", runtime.GOOS, runtime.GOARCH))
	}
	qemu, qerr := exec.LookPath("qemu-system-x86_64")
	if qerr != nil && len(cfg.kernels) > 0 {
		return unavailable("qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)")
	}
	if _, err := os.Stat(filepath.Join(cfg.repoRootOrDot(), "cmd", "sockscope")); err != nil {
		return fmt.Errorf("run me from the repository's root (make kernels): %v", err)
	}
	start := time.Now()
	binDir := filepath.Join(cfg.work, "bin")
	if err := buildBinaries(binDir, cfg.repoRootOrDot()); err != nil {
		return err
	}

	var rows []row
	if cfg.host {
		rows = append(rows, runHost(ctx, cfg, binDir))
	}
	if len(cfg.kernels) > 0 {
		guestRows, err := runGuests(ctx, cfg, qemu, binDir)
		rows = append(rows, guestRows...)
		if err != nil {
			report(cfg, rows, time.Since(start))
			return err
		}
	}
	if err := report(cfg, rows, time.Since(start)); err != nil {
		return err
	}
	var failed []string
	for _, r := range rows {
		if !r.OK && r.Skipped == "" {
			failed = append(failed, r.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed on %s", strings.Join(failed, ", "))
	}
	return nil
}

func (c config) repoRootOrDot() string {
	if c.repoRoot != "" {
		return c.repoRoot
	}
	return "."
}

// buildBinaries builds the static binaries the tests run, and the test binary, from the
// repository at root.
func buildBinaries(dir, root string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	builds := [][]string{{"test", "-c", "-o", filepath.Join(abs, "sockscope.test"), "./cmd/sockscope"}}
	for name, pkg := range guestBinaries {
		builds = append(builds, []string{"build", "-o", filepath.Join(abs, name), pkg})
	}
	for _, args := range builds {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func binNames() []string {
	names := []string{"sockscope.test"}
	for name := range guestBinaries {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// runHost runs the tests natively, with the same protocol as a guest.
func runHost(ctx context.Context, cfg config, binDir string) row {
	r := row{Name: "host", Package: "this machine", Where: "native"}
	uname, _ := exec.Command("uname", "-r").Output()
	release := strings.TrimSpace(string(uname))
	if os.Geteuid() != 0 && !testenv.InCI() {
		r.Skipped = "needs root (the tests load BPF programs and create network namespaces)"
		r.Run = outcome{Release: release}
		logf("host %s: skipped: %s", release, r.Skipped)
		return r
	}
	abs, _ := filepath.Abs(binDir)
	tests := selected(matrixTests, cfg.tests)
	r.Tests = tests
	logf("host %s: running %d tests natively", release, len(tests))
	var out strings.Builder
	fmt.Fprintf(&out, "%skernel %s\n%sversion\n", marker, release, marker)
	v, _ := exec.Command(filepath.Join(abs, "sockscope"), "version").CombinedOutput()
	out.Write(v)
	fmt.Fprintf(&out, "%stests %s\n", marker, runPattern(tests))
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(abs, "sockscope.test"), "-test.v", "-test.count=1",
		"-test.timeout", (cfg.timeout - time.Minute).String(), "-test.run", runPattern(tests))
	cmd.Dir = filepath.Join(cfg.repoRootOrDot(), "cmd", "sockscope")
	cmd.Env = append(os.Environ(), "SOCKSCOPE_TEST_BIN_DIR="+abs)
	testOut, err := cmd.CombinedOutput()
	out.Write(testOut)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	fmt.Fprintf(&out, "%sexit %d\n", marker, code)
	r.Took = time.Since(start)
	os.WriteFile(filepath.Join(cfg.work, "host-results.log"), []byte(out.String()), 0o644)
	r.Run = parseRun(out.String())
	r.OK, r.Summary = r.Run.verdict(tests)
	logf("host %s: %s (%v)", release, r.Summary, r.Took.Round(time.Second))
	if !r.OK {
		printFailure(r, "", "")
	}
	return r
}

// runGuests boots each selected kernel in turn.
func runGuests(ctx context.Context, cfg config, qemu, binDir string) ([]row, error) {
	deb := &debian{cache: cfg.cache, mirror: cfg.mirror, log: logf}
	tools, err := toolsArchive()
	if err != nil {
		return nil, unavailable(err.Error())
	}
	toolsFile, hit, err := tools.cached(filepath.Join(cfg.cache, "initramfs"), "tools")
	if err != nil {
		return nil, err
	}
	if hit {
		logf("guest tools: %s (cached)", toolsFile)
	} else {
		logf("guest tools: built %s", toolsFile)
	}
	binFile := filepath.Join(cfg.work, "bin.cpio")
	if err := binArchive(binDir, binNames()).write(binFile); err != nil {
		return nil, err
	}

	useKVM := false
	switch cfg.accel {
	case "kvm":
		useKVM = true
	case "auto":
		if ok, why := kvmOpens(); ok {
			useKVM = true
		} else {
			logf("KVM: %s; using TCG", why)
		}
	}

	var rows []row
	var errs []string
	for _, name := range cfg.kernels {
		k := kernelByName(name)
		r := row{Name: k.Name, Package: k.Package + " " + k.Version, Tests: selected(k.tests(), cfg.tests)}
		if len(r.Tests) == 0 {
			r.Skipped = "none of -tests is in its set"
			rows = append(rows, r)
			continue
		}
		u, err := deb.fetch(k, kernels)
		if err != nil {
			r.Summary = err.Error()
			rows = append(rows, r)
			errs = append(errs, err.Error())
			logf("%s: %v", k.Name, err)
			continue
		}
		dir := filepath.Join(cfg.work, k.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return rows, err
		}
		testsFile := filepath.Join(dir, "tests.cpio")
		if err := testsArchive(runPattern(r.Tests), (cfg.timeout - time.Minute).String()).write(testsFile); err != nil {
			return rows, err
		}
		initrd := filepath.Join(dir, "initrd.cpio")
		if err := concat(initrd, toolsFile, binFile, testsFile, u.Modules); err != nil {
			return rows, err
		}
		g := guest{qemu: qemu, vmlinuz: u.Vmlinuz, initrd: initrd, dir: dir, cpus: cfg.cpus, memMB: cfg.memMB,
			bootTimeout: cfg.boot, totalTimeout: cfg.timeout}
		var b bootResult
		if useKVM {
			g.accel = accelKVM
			g.bootTimeout = min(cfg.boot, 20*time.Second) // a KVM guest's init runs within 2 s
			logf("%s: booting %s under qemu (KVM)", k.Name, u.Release)
			b = g.run(ctx)
			if b.booted == 0 && cfg.accel == "auto" && ctx.Err() == nil {
				logf("KVM: /dev/kvm opens, but the guest did not boot under it (%s); using TCG", kvmReason(b))
				useKVM = false
			}
		}
		if !useKVM {
			g.accel, g.bootTimeout = accelTCG, cfg.boot
			logf("%s: booting %s under qemu (TCG)", k.Name, u.Release)
			b = g.run(ctx)
		}
		r.Where = "qemu " + string(g.accel)
		r.Boot, r.Took = b.booted, b.took
		r.Run = parseRun(b.results)
		if r.Run.Release == "" {
			r.Run.Release = u.Release
		}
		r.OK, r.Summary = r.Run.verdict(r.Tests)
		if b.failure != "" {
			r.OK = false
			r.Summary = b.failure + "; " + r.Summary
		}
		logf("%s %s: %s (boot %v, total %v)", k.Name, u.Release, r.Summary, b.booted.Round(100*time.Millisecond), b.took.Round(time.Second))
		if !r.OK {
			printFailure(r, b.console, b.qemuErr)
		}
		rows = append(rows, r)
		if ctx.Err() != nil {
			return rows, ctx.Err()
		}
	}
	if len(errs) > 0 {
		return rows, errors.New(strings.Join(errs, "; "))
	}
	return rows, nil
}

// selected keeps the tests of set that are in only, in set's order.
func selected(set, only []string) []string {
	var out []string
	for _, t := range set {
		if slices.Contains(only, t) {
			out = append(out, t)
		}
	}
	return out
}

func kernelByName(name string) kernel {
	for _, k := range kernels {
		if k.Name == name {
			return k
		}
	}
	panic("unknown kernel " + name) // parseFlags checked the names
}

// kvmReason is qemu's first line about an error, or how the boot failed.
func kvmReason(b bootResult) string {
	for _, l := range strings.Split(b.qemuErr, "\n") {
		if strings.Contains(strings.ToLower(l), "error") {
			return strings.TrimSpace(l)
		}
	}
	return b.failure
}

// printFailure shows why a kernel failed: the failed tests' output, else the end of what the
// tests wrote, and the end of the console when the guest itself went wrong.
func printFailure(r row, console, qemuErr string) {
	if out := r.Run.failedOutput(); out != "" {
		fmt.Fprintf(os.Stderr, "--- %s: failed tests:\n%s", r.Name, out)
	} else if len(r.Run.Output) > 0 {
		fmt.Fprintf(os.Stderr, "--- %s: end of the test output:\n%s\n", r.Name, tail(strings.Join(r.Run.Output, "\n"), 40))
	}
	if len(r.Run.Notes) > 0 {
		fmt.Fprintf(os.Stderr, "--- %s: the guest's init said:\n%s\n", r.Name, strings.Join(r.Run.Notes, "\n"))
	}
	if console != "" && (r.Run.Exit == -1 || r.Boot == 0) {
		fmt.Fprintf(os.Stderr, "--- %s: end of the console:\n%s\n", r.Name, tail(console, 30))
	}
	if qemuErr != "" {
		fmt.Fprintf(os.Stderr, "--- %s: qemu said:\n%s\n", r.Name, tail(qemuErr, 10))
	}
}
