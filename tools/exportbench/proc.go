package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process started by the harness, in its own process group (so that a Ctrl-C on the
// terminal reaches only the harness, which then ends its children itself) and with SIGKILL as
// its parent-death signal (so that nothing outlives a harness that is killed outright).
type child struct {
	name  string
	cmd   *exec.Cmd
	start time.Time
	done  chan struct{}
	err   error // from Wait, valid once done is closed
}

var children = struct {
	sync.Mutex
	set map[*child]bool
}{set: map[*child]bool{}}

func startChild(name string, cmd *exec.Cmd) (*child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	children.Lock()
	defer children.Unlock()
	c.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	children.set[c] = true
	go func() {
		c.err = cmd.Wait()
		children.Lock()
		delete(children.set, c)
		children.Unlock()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process itself, not its group.
func (c *child) signal(sig syscall.Signal) {
	if !c.exited() {
		syscall.Kill(c.pid(), sig)
	}
}

// kill sends SIGKILL to the child's process group.
func (c *child) kill() {
	if !c.exited() {
		syscall.Kill(-c.pid(), syscall.SIGKILL)
	}
}

// wait waits at most timeout for the child to exit; then it kills the group and fails.
func (c *child) wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
	}
	c.kill()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	return fmt.Errorf("%s did not exit within %v (killed)", c.name, timeout)
}

// rusage is the child's resource usage, valid once it has been waited for.
func (c *child) rusage() *syscall.Rusage {
	if c.cmd.ProcessState == nil {
		return nil
	}
	ru, _ := c.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return ru
}

func killChildren() {
	children.Lock()
	var cs []*child
	for c := range children.set {
		cs = append(cs, c)
	}
	children.Unlock()
	for _, c := range cs {
		c.kill()
	}
	for _, c := range cs {
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// run runs a command to completion within timeout and returns its stdout; the error carries the
// last line of its stderr.
func run(timeout time.Duration, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	c, err := startChild(name, cmd)
	if err != nil {
		return "", err
	}
	if err := c.wait(timeout); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			msg = ": " + lastLine(msg)
		}
		return stdout.String(), fmt.Errorf("%s %s: %v%s", name, shortArgs(args), err, msg)
	}
	return stdout.String(), nil
}

// shortArgs joins args for an error message, eliding the middle of long argument lists.
func shortArgs(args []string) string {
	if len(args) > 8 {
		return strings.Join(args[:4], " ") + " … " + strings.Join(args[len(args)-2:], " ")
	}
	return strings.Join(args, " ")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Cleanups run once, last registered first, on every exit path (normal, error, signal), after
// all children are killed.
var cleanups = struct {
	sync.Mutex
	fns  []func()
	done bool
}{}

func atExit(f func()) {
	cleanups.Lock()
	defer cleanups.Unlock()
	cleanups.fns = append(cleanups.fns, f)
}

func runCleanups() {
	cleanups.Lock()
	defer cleanups.Unlock()
	if cleanups.done {
		return
	}
	cleanups.done = true
	killChildren()
	for i := len(cleanups.fns) - 1; i >= 0; i-- {
		cleanups.fns[i]()
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "exportbench: "+format+"\n", args...)
}

// procCPU is a process's utime+stime from /proc/PID/stat, all threads, in seconds (USER_HZ
// resolution: 10 ms).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// userHZ is the unit of /proc/PID/stat's times; Linux fixes it at 100 for every architecture
// that sockscope supports.
const userHZ = 100

func parseStatCPU(stat string) (float64, error) {
	// The command name (field 2) may hold spaces and parentheses: fields are counted after the
	// last ')'. Field 3 (state) is the first after it; utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/PID/stat: no ')' in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/PID/stat: %d fields after the name", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/PID/stat: bad utime/stime %q %q", f[11], f[12])
	}
	return float64(ut+st) / userHZ, nil
}

// procStatus holds the fields of /proc/PID/status the report uses.
type procStatus struct {
	RSSKB   int64 // VmRSS
	HWMKB   int64 // VmHWM (peak RSS)
	Threads int
	FDs     int // entries of /proc/PID/fd
}

func readProcStatus(pid int) (procStatus, error) {
	var s procStatus
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, err
	}
	s = parseStatus(string(b))
	if ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil {
		s.FDs = len(ents)
	}
	return s, nil
}

func parseStatus(text string) procStatus {
	var s procStatus
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			s.RSSKB = n
		case "VmHWM":
			s.HWMKB = n
		case "Threads":
			s.Threads = int(n)
		}
	}
	return s
}

// procCPUPrecise is a process's CPU time in seconds with nanosecond resolution: the sum of the
// first field of /proc/PID/task/*/schedstat (time on CPU) over its threads. Unlike
// /proc/PID/stat it does not include threads that have exited.
func procCPUPrecise(pid int) (float64, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var ns uint64
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %q", dir, e.Name(), b)
		}
		ns += v
	}
	return float64(ns) / 1e9, nil
}
