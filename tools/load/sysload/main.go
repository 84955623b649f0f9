// Command sysload makes an exactly known number of system calls, for sockscope's syscall
// tracing tests and benchmarks:
//
//		sysload -dir D [-fsync N] [-unlink N] [-emfile K] [-getppid N] [-invalid N] [-hold D]
//
//	  - -fsync N: opens D/fsync-file (one openat, O_CREAT) and calls fsync on it N times.
//	  - -unlink N: creates D/io-file-000000 ... (openat O_CREAT + close each), then removes each
//	    with one unlinkat(AT_FDCWD, path, 0): N unlinkat calls on N distinct absolute paths.
//	  - -emfile K: lowers the RLIMIT_NOFILE soft limit to 1024 (one prlimit64), creates
//	    D/emfile-target with mknodat (so that no openat is spent on it), then opens it read-only
//	    without closing until openat has failed with EMFILE K times; then closes them all and
//	    restores the limit (a second prlimit64). The successful opens are reported as
//	    openat_ok: 1024 minus the descriptors that were already open.
//	  - -getppid N: N getppid calls in a tight loop, reported as ns per call.
//	  - -invalid N: one call to each of the N syscall numbers from 1000 up, which no
//	    architecture has: each fails with ENOSYS. N distinct keys for a syscall counter, from one
//	    process (the flood that fills a shared map).
//	  - -hold D: sleeps D after printing the summary, so a tracer can still read the process's
//	    name and ancestry when it handles the last events.
//
// The phases run in this order (fsync, unlink, emfile, getppid, invalid), all on the main goroutine
// locked to the main thread, and each operation is exactly one raw system call (x/sys/unix
// wrappers, no retry on EINTR, no os.File). D is made absolute and created if missing (mkdirat,
// no openat). On success sysload writes exactly one JSON line to stdout, after the work and
// before -hold:
//
//	{"pid":P,"fsync":N,"unlinkat":N,"openat_ok":X,"openat_emfile":K,"getppid":N,"ns_per_getppid":F,"openat":T,"invalid":N}
//
// openat is every openat sysload itself made: 1 (if -fsync > 0) + N (-unlink) + X + K. On an
// error sysload writes one line to stderr and exits with status 1; stdout stays empty.
//
// The Go runtime makes openat calls of its own, on the main thread (tid = pid) before main
// runs: /sys/kernel/mm/transparent_hugepage/hpage_pmd_size, then for the cgroup-aware
// GOMAXPROCS /proc/self/cgroup, /proc/self/mountinfo and the CPU limit file(s) (cpu.max on
// cgroup v2; cpu.cfs_quota_us and cpu.cfs_period_us on v1): 4 to 5 calls, depending on the
// machine, some of which may fail. A tracer's openat count for sysload is therefore its
// "openat" plus those; count only paths under D to compare exactly. The runtime always reads
// the cgroup files, but with the settings below it closes them at once instead of holding one
// or two descriptors for the whole run (which would lower openat_ok) and rereading them every
// second.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// emfileLimit is the RLIMIT_NOFILE soft limit set for -emfile.
const emfileLimit = 1024

type summary struct {
	PID          int     `json:"pid"`
	Fsync        int     `json:"fsync"`
	Unlinkat     int     `json:"unlinkat"`
	OpenatOK     int     `json:"openat_ok"`
	OpenatEMFILE int     `json:"openat_emfile"`
	Getppid      int     `json:"getppid"`
	NsPerGetppid float64 `json:"ns_per_getppid"`
	Openat       int     `json:"openat"`
	Invalid      int     `json:"invalid"`
}

// invalidBase is the first syscall number of -invalid: far above the last of x86_64 (about
// 470) and arm64, below x86's x32 bit.
const invalidBase = 1000

func init() {
	// Keep every counted call on one thread (the main thread, whose tid is the pid) from the
	// start; the runtime's own threads then only make runtime calls (futex, nanosleep, ...).
	runtime.LockOSThread()
}

func main() {
	fs := flag.NewFlagSet("sysload", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for the files (created if missing; required)")
	nFsync := fs.Int("fsync", 0, "fsync calls on D/fsync-file")
	nUnlink := fs.Int("unlink", 0, "files D/io-file-%06d to create and then unlinkat")
	nEMFILE := fs.Int("emfile", 0, "openat calls that fail with EMFILE (RLIMIT_NOFILE soft limit 1024)")
	nGetppid := fs.Int("getppid", 0, "getppid calls (timed)")
	nInvalid := fs.Int("invalid", 0, "calls to as many syscall numbers that do not exist (ENOSYS), from 1000 up")
	hold := fs.Duration("hold", 0, "sleep this long after printing the summary")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fail(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *dir == "" {
		fail(errors.New("-dir is required"))
	}
	for name, v := range map[string]int{"-fsync": *nFsync, "-unlink": *nUnlink, "-emfile": *nEMFILE, "-getppid": *nGetppid, "-invalid": *nInvalid} {
		if v < 0 {
			fail(fmt.Errorf("%s must not be negative", name))
		}
	}
	if *hold < 0 {
		fail(errors.New("-hold must not be negative"))
	}
	d, err := filepath.Abs(*dir)
	if err != nil {
		fail(err)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		fail(err)
	}

	s := summary{PID: os.Getpid()}
	if err := doFsync(&s, d, *nFsync); err != nil {
		fail(err)
	}
	if err := doUnlink(&s, d, *nUnlink); err != nil {
		fail(err)
	}
	if err := doEMFILE(&s, d, *nEMFILE); err != nil {
		fail(err)
	}
	doGetppid(&s, *nGetppid)
	if err := doInvalid(&s, *nInvalid); err != nil {
		fail(err)
	}

	line, err := json.Marshal(s)
	if err != nil {
		fail(err)
	}
	if _, err := os.Stdout.Write(append(line, '\n')); err != nil {
		fail(err)
	}
	if *hold > 0 {
		time.Sleep(*hold)
	}
}

func doInvalid(s *summary, n int) error {
	for nr := uintptr(invalidBase); nr < uintptr(invalidBase+n); nr++ {
		_, _, errno := unix.RawSyscall(nr, 0, 0, 0)
		s.Invalid++
		if errno != unix.ENOSYS {
			return fmt.Errorf("syscall %d: %v, want ENOSYS", nr, errno)
		}
	}
	return nil
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "sysload: %v\n", err)
	os.Exit(1)
}

func doFsync(s *summary, dir string, n int) error {
	if n == 0 {
		return nil
	}
	path := filepath.Join(dir, "fsync-file")
	fd, err := unix.Openat(unix.AT_FDCWD, path, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	s.Openat++
	if err != nil {
		return fmt.Errorf("openat %s: %w", path, err)
	}
	defer unix.Close(fd)
	for range n {
		err := unix.Fsync(fd)
		s.Fsync++
		if err != nil {
			return fmt.Errorf("fsync %s (call %d): %w", path, s.Fsync, err)
		}
	}
	return nil
}

func doUnlink(s *summary, dir string, n int) error {
	if n == 0 {
		return nil
	}
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("io-file-%06d", i))
	}
	for _, p := range paths {
		fd, err := unix.Openat(unix.AT_FDCWD, p, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
		s.Openat++
		if err != nil {
			return fmt.Errorf("openat %s: %w", p, err)
		}
		if err := unix.Close(fd); err != nil {
			return fmt.Errorf("close %s: %w", p, err)
		}
	}
	for _, p := range paths {
		err := unix.Unlinkat(unix.AT_FDCWD, p, 0)
		s.Unlinkat++
		if err != nil {
			return fmt.Errorf("unlinkat %s: %w", p, err)
		}
	}
	return nil
}

func doEMFILE(s *summary, dir string, k int) error {
	if k == 0 {
		return nil
	}
	var old unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		return fmt.Errorf("prlimit RLIMIT_NOFILE: %w", err)
	}
	if old.Max < emfileLimit {
		return fmt.Errorf("RLIMIT_NOFILE hard limit %d is below %d", old.Max, emfileLimit)
	}
	lim := unix.Rlimit{Cur: emfileLimit, Max: old.Max}
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		return fmt.Errorf("prlimit RLIMIT_NOFILE soft %d: %w", emfileLimit, err)
	}
	defer unix.Prlimit(0, unix.RLIMIT_NOFILE, &old, nil)

	target := filepath.Join(dir, "emfile-target")
	if err := unix.Mknodat(unix.AT_FDCWD, target, unix.S_IFREG|0o644, 0); err != nil && err != unix.EEXIST {
		return fmt.Errorf("mknodat %s: %w", target, err)
	}
	fds := make([]int, 0, emfileLimit)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for s.OpenatEMFILE < k {
		fd, err := unix.Openat(unix.AT_FDCWD, target, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		s.Openat++
		switch {
		case err == nil:
			if s.OpenatEMFILE > 0 {
				// Nothing was closed, so the table cannot have room again; a descriptor the
				// runtime closed on another thread would make the counts meaningless.
				unix.Close(fd)
				return errors.New("openat succeeded after EMFILE: descriptors are being closed concurrently")
			}
			fds = append(fds, fd)
			s.OpenatOK++
			if s.OpenatOK > emfileLimit {
				return fmt.Errorf("%d opens without EMFILE: the soft limit of %d did not take", s.OpenatOK, emfileLimit)
			}
		case err == unix.EMFILE:
			s.OpenatEMFILE++
		default:
			return fmt.Errorf("openat %s: %w", target, err)
		}
	}
	return nil
}

func doGetppid(s *summary, n int) {
	if n == 0 {
		return
	}
	start := time.Now()
	for range n {
		unix.Getppid()
	}
	elapsed := time.Since(start)
	s.Getppid = n
	s.NsPerGetppid = math.Round(float64(elapsed.Nanoseconds())/float64(n)*10) / 10
}
