// Package benchkit holds what the benchmark harnesses under tools/ share: child processes and
// the cleanups of every exit path, the BPF ids a process holds (fdinfo), the description of the
// machine, the benchmark's network namespace and its `tcpload storm`, and the statistics, number
// formats and notes of the reports.
package benchkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Prog names the harness at the start of its log lines ("Prog: ..."); its main sets it first.
var Prog = "benchkit"

// Logf writes one progress line to stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, Prog+": "+format+"\n", args...)
}

// Proc is a child process started by the harness, in its own process group (so that a Ctrl-C
// on the terminal reaches only the harness, which then ends its children itself) and with
// SIGKILL as its parent-death signal (so that nothing outlives a harness that is killed
// outright).
type Proc struct {
	Name  string
	Cmd   *exec.Cmd
	Start time.Time
	Done  chan struct{}
	Err   error // from Wait, valid once Done is closed
}

var live = struct {
	sync.Mutex
	procs map[*Proc]bool
}{procs: map[*Proc]bool{}}

// StartProc starts cmd. The child is killed by RunCleanups on every exit path.
func StartProc(name string, cmd *exec.Cmd) (*Proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{Name: name, Cmd: cmd, Done: make(chan struct{})}
	live.Lock()
	defer live.Unlock()
	p.Start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	live.procs[p] = true
	go func() {
		p.Err = cmd.Wait()
		live.Lock()
		delete(live.procs, p)
		live.Unlock()
		close(p.Done)
	}()
	return p, nil
}

func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

func (p *Proc) Exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process itself, not its group.
func (p *Proc) Signal(sig syscall.Signal) {
	if !p.Exited() {
		syscall.Kill(p.Pid(), sig)
	}
}

// Kill sends SIGKILL to the process group.
func (p *Proc) Kill() {
	if !p.Exited() {
		syscall.Kill(-p.Pid(), syscall.SIGKILL)
	}
}

// Wait waits at most timeout for the process to exit; then it kills the group and fails.
func (p *Proc) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.Done:
		return p.Err
	case <-t.C:
	}
	p.Kill()
	select {
	case <-p.Done:
	case <-time.After(5 * time.Second):
	}
	return fmt.Errorf("%s did not exit within %v (killed)", p.Name, timeout)
}

// Rusage is the child's resource usage, valid once it has been waited for.
func (p *Proc) Rusage() *syscall.Rusage {
	if p.Cmd.ProcessState == nil {
		return nil
	}
	ru, _ := p.Cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return ru
}

// FdinfoIDs returns the ids that process pid's open fds refer to by one key of their fdinfo
// ("prog_id" for BPF programs and links, "map_id" for BPF maps), each once, in the order of
// the fds' names (as strings).
func FdinfoIDs(pid int, key string) []uint32 {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	seen := map[uint32]bool{}
	var ids []uint32
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, key+":"); ok {
				if id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil && !seen[uint32(id)] {
					seen[uint32(id)] = true
					ids = append(ids, uint32(id))
				}
			}
		}
	}
	return ids
}

// killAll kills every child that is still running and waits briefly for them.
func killAll() {
	live.Lock()
	var ps []*Proc
	for p := range live.procs {
		ps = append(ps, p)
	}
	live.Unlock()
	for _, p := range ps {
		p.Kill()
	}
	for _, p := range ps {
		select {
		case <-p.Done:
		case <-time.After(5 * time.Second):
		}
	}
}

// Run runs a command to completion within timeout and returns its stdout; the error carries the
// last line of its stderr.
func Run(timeout time.Duration, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	p, err := StartProc(name, cmd)
	if err != nil {
		return "", err
	}
	if err := p.Wait(timeout); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			msg = ": " + LastLine(msg)
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

// Tail keeps the last 10 lines of a child's stderr for error messages. Its owner locks it if
// more than one goroutine uses it.
type Tail []string

func (t *Tail) Add(line string) {
	*t = append(*t, line)
	if len(*t) > 10 {
		*t = (*t)[1:]
	}
}

func (t Tail) String() string {
	if len(t) == 0 {
		return "(no stderr output)"
	}
	return strings.Join(t, " | ")
}

// LastLine is the last line of s with the white space around s trimmed.
func LastLine(s string) string {
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

// AtExit registers f to run in RunCleanups.
func AtExit(f func()) {
	cleanups.Lock()
	defer cleanups.Unlock()
	cleanups.fns = append(cleanups.fns, f)
}

// RunCleanups kills every child and runs the registered cleanups; only the first call does
// anything.
func RunCleanups() {
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

// CleanupOnSignal makes SIGINT, SIGTERM and SIGHUP end the children, run the cleanups and exit
// with status 130.
func CleanupOnSignal() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		Logf("%v: stopping children and cleaning up", s)
		RunCleanups()
		os.Exit(130)
	}()
}
