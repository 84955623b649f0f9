package loader

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// SyscallConfig selects what `sockscope syscalls` counts; the rest is dropped in the kernel.
type SyscallConfig struct {
	FilterNetns bool
	Netns       []uint32
	Pid         uint32
	Latency     bool
	Paths       bool
	// ByNetns counts per namespace and syscall only, leaving Tgid and Comm zero (the exporter).
	ByNetns bool
	// PathSyscalls are the calls whose path argument is counted with Paths (at most 12).
	PathSyscalls []PathSyscall
}

// PathSyscall is a syscall number and which argument (0 or 1) holds its path.
type PathSyscall struct {
	Nr  uint32
	Arg uint8
}

// Syscalls is the attached `syscalls` programs and their in-kernel aggregates.
type Syscalls struct {
	objs  syscallsObjects
	links []link.Link
	netns netnsSet
}

// OpenSyscalls loads and attaches the syscall counters. Call Close to detach.
func OpenSyscalls(cfg SyscallConfig) (*Syscalls, error) {
	if err := memlock(); err != nil {
		return nil, err
	}
	spec, err := loadSyscalls()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	if len(cfg.PathSyscalls) > 12 {
		return nil, errors.New("at most 12 path syscalls")
	}
	var nrs [12]uint32
	var args [12]uint8
	for i, p := range cfg.PathSyscalls {
		nrs[i], args[i] = p.Nr, p.Arg
	}
	for name, v := range map[string]any{
		"filter_netns": cfg.FilterNetns, "filter_pid": cfg.Pid, "want_latency": cfg.Latency,
		"want_paths": cfg.Paths, "by_netns": cfg.ByNetns, "exclude_tgid": uint32(os.Getpid()), "path_nrs": nrs, "path_args": args,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	s := &Syscalls{}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, missing("load the syscall programs", err, featBTF, featTpBTF, featTaskStorage)
	}
	if err := s.SetNetns(cfg.Netns); err != nil {
		s.Close()
		return nil, err
	}
	progs := []*ebpf.Program{s.objs.OnExit}
	if cfg.Latency || cfg.Paths {
		// Without them sys_enter has nothing to do: every syscall on the machine would pay
		// for a program that returns at once.
		progs = append(progs, s.objs.OnEnter)
	}
	for _, p := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			s.Close()
			return nil, missing("attach raw tracepoint (tp_btf) for syscalls", err, featTpBTF)
		}
		s.links = append(s.links, l)
	}
	debug.FreeOSMemory()
	return s, nil
}

// SetNetns replaces the set of traced network namespaces (used only with FilterNetns).
func (s *Syscalls) SetNetns(inodes []uint32) error {
	_, err := s.netns.set(s.objs.NetnsFilter, inodes)
	return err
}

// Close detaches the programs and frees the maps.
func (s *Syscalls) Close() error {
	for _, l := range s.links {
		l.Close()
	}
	return s.objs.Close()
}

// Prune deletes the counts and errors of every namespace not in keep.
func (s *Syscalls) Prune(keep map[uint32]bool) error {
	if err := deleteKeys(s.objs.Counts, func(k syscallsScKey) bool { return !keep[k.Netns] }); err != nil {
		return err
	}
	return deleteKeys(s.objs.Errors, func(k syscallsErrKey) bool { return !keep[k.Netns] })
}

// SyscallKey names who made a syscall: the task's netns, its process and command name, the
// syscall number.
type SyscallKey struct {
	Netns, Tgid, Nr uint32
	Comm            string
}

// SyscallCount is the aggregate of one key.
type SyscallCount struct {
	SyscallKey
	Count    uint64
	Errors   uint64
	LatTotal time.Duration
	LatMax   time.Duration
}

// SyscallErrors counts the failures of one key by errno.
type SyscallErrors struct {
	SyscallKey
	Errno syscall.Errno
	Count uint64
}

// PathCount counts the calls of one key by the path they were given.
type PathCount struct {
	SyscallKey
	Path  string
	Count uint64
}

// SyscallSnapshot is everything counted since the programs were attached.
type SyscallSnapshot struct {
	Counts []SyscallCount
	Errors []SyscallErrors
	Paths  []PathCount
	// Dropped counts keys that did not fit their map (counts, errors, paths).
	Dropped [3]uint64
}

// Read sums the per-CPU aggregates.
func (s *Syscalls) Read() (SyscallSnapshot, error) {
	var snap SyscallSnapshot
	var k syscallsScKey
	var vals []syscallsScVal
	it := s.objs.Counts.Iterate()
	for it.Next(&k, &vals) {
		c := SyscallCount{SyscallKey: SyscallKey{k.Netns, k.Tgid, k.Nr, cString(k.Comm[:])}}
		for _, v := range vals {
			c.Count += v.Count
			c.Errors += v.Errors
			c.LatTotal += time.Duration(v.LatTotalNs)
			c.LatMax = max(c.LatMax, time.Duration(v.LatMaxNs))
		}
		snap.Counts = append(snap.Counts, c)
	}
	if err := it.Err(); err != nil {
		return snap, fmt.Errorf("read syscall counts: %w", err)
	}
	var ek syscallsErrKey
	var per []uint64
	eit := s.objs.Errors.Iterate()
	for eit.Next(&ek, &per) {
		e := SyscallErrors{SyscallKey: SyscallKey{ek.Netns, ek.Tgid, ek.Nr, cString(ek.Comm[:])}, Errno: syscall.Errno(ek.Err)}
		for _, v := range per {
			e.Count += v
		}
		snap.Errors = append(snap.Errors, e)
	}
	if err := eit.Err(); err != nil {
		return snap, fmt.Errorf("read syscall errors: %w", err)
	}
	var pk syscallsPathKey
	var n uint64
	pit := s.objs.Paths.Iterate()
	for pit.Next(&pk, &n) {
		snap.Paths = append(snap.Paths, PathCount{SyscallKey: SyscallKey{pk.Netns, pk.Tgid, pk.Nr, cString(pk.Comm[:])}, Path: cString(pk.Path[:]), Count: n})
	}
	if err := pit.Err(); err != nil {
		return snap, fmt.Errorf("read syscall paths: %w", err)
	}
	for i := range snap.Dropped {
		if err := s.objs.Dropped.Lookup(uint32(i), &per); err != nil {
			return snap, fmt.Errorf("read dropped counters: %w", err)
		}
		for _, v := range per {
			snap.Dropped[i] += v
		}
	}
	return snap, nil
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
