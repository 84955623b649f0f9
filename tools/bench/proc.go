package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process in its own process group, so that it and anything it starts can be
// killed together, and so that a Ctrl-C on the terminal reaches only the harness (which then
// ends its children itself).
type proc struct {
	name  string
	cmd   *exec.Cmd
	start time.Time
	done  chan struct{}
	err   error // from Wait, valid once done is closed
}

var live = struct {
	sync.Mutex
	procs map[*proc]bool
}{procs: map[*proc]bool{}}

// startProc starts cmd. Children get SIGKILL if the harness dies (Pdeathsig) and are killed by
// killAll on every exit path.
func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	live.Lock()
	defer live.Unlock()
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	live.procs[p] = true
	go func() {
		p.err = cmd.Wait()
		live.Lock()
		delete(live.procs, p)
		live.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process itself (not its group).
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		syscall.Kill(p.pid(), sig)
	}
}

// kill sends SIGKILL to the process group.
func (p *proc) kill() {
	if !p.exited() {
		syscall.Kill(-p.pid(), syscall.SIGKILL)
	}
}

// wait waits for the process to exit, at most timeout; on timeout it kills the group and
// returns an error.
func (p *proc) wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
	}
	p.kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return fmt.Errorf("%s did not exit within %v (killed)", p.name, timeout)
}

// rusage returns the child's resource usage from wait (valid after wait returned).
func (p *proc) rusage() *syscall.Rusage {
	if p.cmd.ProcessState == nil {
		return nil
	}
	ru, _ := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return ru
}

// killAll kills every child that is still running and waits briefly for them.
func killAll() {
	live.Lock()
	var ps []*proc
	for p := range live.procs {
		ps = append(ps, p)
	}
	live.Unlock()
	for _, p := range ps {
		p.kill()
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// run runs a command to completion with a timeout and returns its stdout. The error includes
// the command's stderr.
func run(timeout time.Duration, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	p, err := startProc(name, cmd)
	if err != nil {
		return "", err
	}
	if err := p.wait(timeout); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			msg = ": " + lastLine(msg)
		}
		return stdout.String(), fmt.Errorf("%s %s: %v%s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// cleanups run once, in reverse order, on every exit path (normal, error, signal), after all
// children are killed.
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
	killAll()
	for i := len(cleanups.fns) - 1; i >= 0; i-- {
		cleanups.fns[i]()
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
