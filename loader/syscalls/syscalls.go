// Package syscalls loads the syscall counters (bpf/syscalls.bpf.c): calls, errors by errno,
// latency and the paths of file calls, per namespace and process, aggregated in the kernel.
package syscalls

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/sockscope/sockscope/loader"
)

// Syscall numbers the kernel side counts under rows of their own (bpf/syscalls.h).
const (
	// Invalid is every number the kernel has no syscall for: one row, whatever a process
	// passes to syscall(2).
	Invalid = 0xffffffff
	// Other is a namespace's calls beyond its budget of rows (Config.RowsPerNetns).
	Other = 0xfffffffe
)

// Config selects what `sockscope syscalls` counts; the rest is dropped in the kernel.
type Config struct {
	FilterNetns bool
	Netns       []uint32
	Pid         uint32
	// Comms, when not empty, are the only processes counted, by name (bpf/comm.h).
	Comms   []string
	Latency bool
	Paths   bool
	// ByNetns counts per namespace and syscall only, leaving Tgid and Comm zero (the exporter).
	ByNetns bool
	// PathSyscalls are the calls whose path argument is counted with Paths (at most 12).
	PathSyscalls []PathSyscall
	// MaxNetns is how many namespaces the filter selects at once (default 4096).
	MaxNetns uint32
	// MaxRows sizes the counts map (default 32768; errors half, paths a quarter).
	MaxRows uint32
	// RowsPerNetns is each namespace's budget of rows over the three maps, so that one namespace
	// cannot fill them for all (default MaxRows/8, at least 256). Calls beyond it are counted in
	// the namespace's Other row.
	RowsPerNetns uint32
}

// PathSyscall is a syscall number and which argument (0 or 1) holds its path.
type PathSyscall struct {
	Nr  uint32
	Arg uint8
}

// Counter is the attached `syscalls` programs and their in-kernel aggregates.
type Counter struct {
	objs  syscallsObjects
	links []link.Link
	netns *loader.NetnsTable
	cfg   Config
}

// Open loads and attaches the syscall counters. Call Close to detach.
func Open(cfg Config) (*Counter, error) {
	if err := loader.Memlock(); err != nil {
		return nil, err
	}
	spec, err := loadSyscalls()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	if len(cfg.PathSyscalls) > 12 {
		return nil, errors.New("at most 12 path syscalls")
	}
	if cfg.MaxNetns == 0 {
		cfg.MaxNetns = 4096
	}
	if cfg.MaxRows == 0 {
		cfg.MaxRows = 32768
	}
	if cfg.RowsPerNetns == 0 {
		cfg.RowsPerNetns = max(cfg.MaxRows/8, 256)
	}
	var sp syscallsSpecs
	if err := loader.AssignSpecs(spec, &sp, "syscalls"); err != nil {
		return nil, err
	}
	if err := (loader.NetnsSpecs{Direct: sp.NetnsDirect, Overflow: sp.NetnsOverflow, Mask: sp.NetnsMask, Filter: sp.FilterNetns}).Size(cfg.MaxNetns, cfg.FilterNetns); err != nil {
		return nil, err
	}
	sp.Counts.MaxEntries = cfg.MaxRows
	sp.Errors.MaxEntries = max(cfg.MaxRows/2, 1)
	sp.Paths.MaxEntries = max(cfg.MaxRows/4, 1)
	sp.Comms.MaxEntries = max(cfg.MaxRows/2, 1)
	// A row budget per namespace: all of them when unfiltered, else those selected at once.
	sp.Rows.MaxEntries = cfg.MaxNetns
	if err := (loader.CommSpecs{Count: sp.CommCount, Names: sp.CommNames}).Set(cfg.Comms); err != nil {
		return nil, err
	}
	var nrs [12]uint32
	var args [12]uint8
	for i, p := range cfg.PathSyscalls {
		nrs[i], args[i] = p.Nr, p.Arg
	}
	if err := loader.SetConstants(
		loader.Const(sp.FilterPid, cfg.Pid), loader.Const(sp.WantLatency, cfg.Latency), loader.Const(sp.WantPaths, cfg.Paths),
		loader.Const(sp.ByNetns, cfg.ByNetns), loader.Const(sp.ExcludeTgid, uint32(os.Getpid())),
		loader.Const(sp.RowsPerNetns, cfg.RowsPerNetns), loader.Const(sp.PathNrs, nrs), loader.Const(sp.PathArgs, args),
	); err != nil {
		return nil, err
	}
	s := &Counter{cfg: cfg}
	if err := spec.LoadAndAssign(&s.objs, loader.LoadOptions()); err != nil {
		return nil, loader.Missing("load the syscall programs", err, loader.NeedBTF, loader.NeedTpBTF, loader.NeedTaskStorage)
	}
	s.netns = loader.NewNetnsTable(s.objs.NetnsDirect, s.objs.NetnsOverflow, s.objs.NetnsFew, cfg.MaxNetns)
	if err := s.SetNetns(cfg.Netns); err != nil {
		s.Close()
		return nil, err
	}
	progs := []*ebpf.Program{s.objs.OnExit}
	if cfg.Latency {
		// Without it sys_enter has nothing to do (paths are read at sys_exit, from the saved
		// registers): every syscall on the machine would pay for a program that returns at once.
		progs = append(progs, s.objs.OnEnter)
	}
	for _, p := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			s.Close()
			return nil, loader.Missing("attach raw tracepoint (tp_btf) for syscalls", err, loader.NeedTpBTF)
		}
		s.links = append(s.links, l)
	}
	return s, nil
}

// SetNetns replaces the set of traced network namespaces (used only with FilterNetns).
func (s *Counter) SetNetns(inodes []uint32) error {
	_, err := s.netns.SelectAll(inodes)
	return err
}

// Close detaches the programs and frees the maps.
func (s *Counter) Close() error {
	for _, l := range s.links {
		l.Close()
	}
	return s.objs.Close()
}

// Prune deletes the rows of every namespace not in keep, and gives them back their budgets.
func (s *Counter) Prune(keep map[uint32]bool) error {
	if err := loader.DeleteKeys(s.objs.Counts, func(k syscallsScKey) bool { return !keep[k.Netns] }); err != nil {
		return err
	}
	if err := loader.DeleteKeys(s.objs.Errors, func(k syscallsErrKey) bool { return !keep[k.K.Netns] }); err != nil {
		return err
	}
	if err := loader.DeleteKeys(s.objs.Paths, func(k syscallsPathKey) bool { return !keep[k.K.Netns] }); err != nil {
		return err
	}
	if err := loader.DeleteKeys(s.objs.Rows, func(ino uint32) bool { return !keep[ino] }); err != nil {
		return err
	}
	// The command names of processes that no longer have a row.
	rows, err := loader.Keys[syscallsScKey](s.objs.Counts)
	if err != nil {
		return err
	}
	used := make(map[syscallsCommKey]bool, len(rows))
	for _, k := range rows {
		used[syscallsCommKey{Tgid: k.Tgid, ExecId: k.ExecId}] = true
	}
	return loader.DeleteKeys(s.objs.Comms, func(k syscallsCommKey) bool { return !used[k] })
}

// Key names who made a syscall: the task's netns, its process and command name, the
// syscall number (Invalid, Other: see there).
type Key struct {
	Netns, Tgid, Nr uint32
	Comm            string
}

// Count is the aggregate of one key.
type Count struct {
	Key
	Count    uint64
	Errors   uint64
	LatTotal time.Duration
	LatMax   time.Duration
}

// Errors counts the failures of one key by errno.
type Errors struct {
	Key
	Errno syscall.Errno
	Count uint64
}

// PathCount counts the calls of one key by the path they were given.
type PathCount struct {
	Key
	Path  string
	Count uint64
}

// Snapshot is everything counted since the programs were attached.
type Snapshot struct {
	Counts []Count
	Errors []Errors
	Paths  []PathCount
	// Dropped counts what did not fit a full map (processes' calls, errno counts, paths) and the
	// new rows refused because their namespace had used its budget (their calls are in the
	// namespace's Other row).
	Dropped Drops
}

// Drops is what the syscall counters could not count as asked, by reason.
type Drops struct {
	CountsFull uint64 // calls not counted: the counts map was full
	ErrorsFull uint64 // errno counts not kept: the errors map was full
	PathsFull  uint64 // paths not kept: the paths map was full
	OverBudget uint64 // rows refused to a namespace over its budget (its calls counted as "other")
}

// Drops reads the drop counters, summed over CPUs.
func (s *Counter) Drops() (Drops, error) {
	l, err := loader.ReadLost(s.objs.Lost)
	return Drops{CountsFull: l[loader.LostSyscallCounts], ErrorsFull: l[loader.LostSyscallErrors], PathsFull: l[loader.LostSyscallPaths], OverBudget: l[loader.LostSyscallBudget]}, err
}

// Read sums the per-CPU aggregates.
func (s *Counter) Read() (Snapshot, error) {
	var snap Snapshot
	comms := map[syscallsCommKey]string{}
	var ck syscallsCommKey
	var cv syscallsCommVal
	cit := s.objs.Comms.Iterate()
	for cit.Next(&ck, &cv) {
		comms[ck] = cString(cv.Comm[:])
	}
	if err := cit.Err(); err != nil {
		return snap, fmt.Errorf("read command names: %w", err)
	}
	key := func(k syscallsScKey) Key {
		return Key{k.Netns, k.Tgid, k.Nr, comms[syscallsCommKey{Tgid: k.Tgid, ExecId: k.ExecId}]}
	}
	var k syscallsScKey
	var vals []syscallsScVal
	it := s.objs.Counts.Iterate()
	for it.Next(&k, &vals) {
		c := Count{Key: key(k)}
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
		e := Errors{Key: key(ek.K), Errno: syscall.Errno(ek.Err)}
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
		snap.Paths = append(snap.Paths, PathCount{Key: key(pk.K), Path: cString(pk.Path[:]), Count: n})
	}
	if err := pit.Err(); err != nil {
		return snap, fmt.Errorf("read syscall paths: %w", err)
	}
	d, err := s.Drops()
	if err != nil {
		return snap, err
	}
	snap.Dropped = d
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
