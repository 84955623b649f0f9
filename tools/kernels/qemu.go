package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// accel is how qemu runs a guest.
type accel string

const (
	accelKVM accel = "KVM"
	accelTCG accel = "TCG"
)

// qemuArgs boots vmlinuz with initrd and nothing else: no disk, no network device (the tests'
// traffic stays on the guest's loopback and in its namespaces), the console on the first serial
// port and the results on the second, both into files.
//
// TCG runs single-threaded: with one host thread per vCPU (MTTCG, qemu 7.2), 2 runs in 4 of the
// tests on 6.1 hung both vCPUs for good in syscall_trace_enter, at a jump label the kernel
// patches when syscall tracepoints are attached and detached (the kernel's cross-CPU code
// patching and MTTCG's translated code disagreed). Single-threaded, 0 of 6 hung, in the same time.
func qemuArgs(a accel, vmlinuz, initrd, console, results string, cpus, memMB int) []string {
	args := []string{"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-monitor", "none"}
	if a == accelKVM {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg,thread=single", "-cpu", "max")
	}
	return append(args,
		"-smp", fmt.Sprint(cpus), "-m", fmt.Sprint(memMB),
		"-kernel", vmlinuz, "-initrd", initrd,
		// panic=-1 with -no-reboot: a panic ends qemu at once. A soft lockup is a hang: panic on it,
		// so that the console has its stack and the run does not wait for the timeout.
		"-append", "console=ttyS0 panic=-1 softlockup_panic=1 loglevel=4",
		"-serial", "file:"+console, "-serial", "file:"+results,
	)
}

// guest is one boot of a kernel.
type guest struct {
	qemu         string
	accel        accel
	vmlinuz      string
	initrd       string
	dir          string // console.log and results.log go here
	cpus, memMB  int
	bootTimeout  time.Duration // until init says it runs
	totalTimeout time.Duration // until the guest powers off
}

// bootResult is how a boot ended.
type bootResult struct {
	booted   time.Duration // 0 if init never started
	took     time.Duration
	results  string // what the guest wrote to its second serial port
	console  string
	failure  string // empty when the guest powered off by itself after init started
	qemuErr  string // qemu's own stderr
	timedOut bool
}

// run boots the guest and waits for it to power off, killing it at the boot or total timeout.
func (g guest) run(ctx context.Context) bootResult {
	console := filepath.Join(g.dir, "console.log")
	results := filepath.Join(g.dir, "results.log")
	os.Remove(console)
	os.Remove(results)
	stderr := &syncBuffer{}
	cmd := exec.Command(g.qemu, qemuArgs(g.accel, g.vmlinuz, g.initrd, console, results, g.cpus, g.memMB)...)
	cmd.Stderr = stderr
	start := time.Now()
	var r bootResult
	if err := cmd.Start(); err != nil {
		r.failure = fmt.Sprintf("start %s: %v", g.qemu, err)
		return r
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var waitErr error
	exited := false
	for !exited {
		select {
		case waitErr = <-done:
			exited = true
		case <-ctx.Done():
			cmd.Process.Kill()
			<-done
			exited = true
			r.failure = "interrupted"
		case <-tick.C:
			elapsed := time.Since(start)
			if r.booted == 0 && fileContains(console, "sockscope-kernels: init") {
				r.booted = elapsed
			}
			switch {
			case r.booted == 0 && g.accel == accelKVM && strings.Contains(stderr.String(), "KVM internal error"):
				// qemu stops the guest and waits: nothing more will happen.
				r.failure = "KVM internal error"
			case r.booted == 0 && elapsed > g.bootTimeout:
				r.failure = fmt.Sprintf("the guest did not start its init within %v: killed", g.bootTimeout)
			case elapsed > g.totalTimeout:
				r.failure = fmt.Sprintf("the guest did not finish within %v: killed", g.totalTimeout)
			default:
				continue
			}
			r.timedOut = true
			cmd.Process.Kill()
			<-done
			exited = true
		}
	}
	r.took = time.Since(start)
	if r.booted == 0 && fileContains(console, "sockscope-kernels: init") {
		r.booted = r.took
	}
	r.results = readText(results)
	r.console = readText(console)
	r.qemuErr = strings.TrimSpace(stderr.String())
	os.WriteFile(filepath.Join(g.dir, "qemu-"+strings.ToLower(string(g.accel))+".log"), []byte(stderr.String()), 0o644)
	if r.failure == "" {
		switch {
		case waitErr != nil:
			r.failure = fmt.Sprintf("qemu exited with %v", waitErr)
		case r.booted == 0:
			r.failure = "the guest stopped before its init started"
		}
	}
	return r
}

func readText(file string) string {
	b, _ := os.ReadFile(file)
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

func fileContains(file, s string) bool {
	b, err := os.ReadFile(file)
	return err == nil && strings.Contains(string(b), s)
}

// kvmOpens says whether /dev/kvm answers the KVM API; whether qemu can run a guest with it is
// found out by booting one (on some hosts it opens, and the guest fails to start or hangs).
func kvmOpens() (bool, string) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false, err.Error()
	}
	defer f.Close()
	const kvmGetAPIVersion = 0xAE00
	v, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	if errno != 0 {
		return false, "KVM_GET_API_VERSION: " + errno.Error()
	}
	if v != 12 {
		return false, fmt.Sprintf("KVM API version %d, want 12", v)
	}
	return true, ""
}

// syncBuffer is qemu's stderr, written by exec's copier while run reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
