// Package trace loads and attaches the programs of `sockscope trace` and `record`
// (bpf/trace.bpf.c): TCP state transitions and connect outcomes, filtered in the kernel by
// namespace, port, family, process and state, written to a ring buffer. It keeps the filters
// current, walks the owners of the sockets that existed before it started, and reads the ring
// (Tracking); events/ decodes the records.
package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/sockscope/sockscope/loader"
)

// Address families, as the kernel numbers them.
const (
	AFInet  = 2
	AFInet6 = 10
)

// Config selects what the kernel sends up; everything not selected is dropped in the kernel.
// The owner, state and connect-error filters are user space's (events/trace.Filter): the owner of a
// socket and the time it spent in a state are kept there, from every transition.
type Config struct {
	// FilterNetns restricts events to the network namespaces in Netns (which may start empty
	// and be filled later with SetNetns, e.g. when a selected container starts).
	FilterNetns bool
	Netns       []uint32
	MaxNetns    uint32   // namespaces selected at once (default 4096)
	Ports       []uint16 // local or remote port; empty = all
	Family      uint8    // AFInet or AFInet6; 0 = both
	// ConnectSyscall adds the connect() syscall tracepoints: failures before SYN_SENT
	// (ENETUNREACH) and the exact errno of failures inside connect(). They put every syscall of
	// the machine on the slow path while attached.
	ConnectSyscall bool
	// Pid and Comms keep only the sockets owned by this process, or by processes of these names
	// (at most MaxCommFilters; bpf/comm.h), in the kernel. The kernel's selection is a superset:
	// events/trace.Filter applies the same predicate exactly to the owners user space keeps.
	Pid   uint32
	Comms []string
	// MaxOwned is how many sockets the owner filter follows at once (default 65536); sockets
	// past it are lost, and counted.
	MaxOwned uint32
	// RingBytes is the ring buffer size (a power of two, at least a page); 0 = DefaultRingBytes.
	RingBytes uint32
}

// DefaultRingBytes holds about 80,000 IPv4 records: 160 ms at 500,000 transitions/s. The ring
// is mapped twice into the reader and all of it is resident, so it is most of sockscope's memory.
const DefaultRingBytes = 4 << 20

// Tracer is the attached `trace` programs and the reader of their ring buffer.
type Tracer struct {
	objs  traceLoaded
	links []link.Link
	ring  *loader.Ring
	netns *loader.NetnsTable
	cfg   Config

	mu    sync.Mutex
	seeds []Owner // owners found by walks not yet taken (TakeOwners)
}

// Open loads and attaches the programs behind `sockscope trace`. Call Close to detach.
func Open(cfg Config) (*Tracer, error) {
	if err := loader.Memlock(); err != nil {
		return nil, err
	}
	if cfg.ConnectSyscall {
		if err := loader.MountTracefs(); err != nil {
			return nil, err
		}
	}
	spec, err := loadTrace()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	if cfg.RingBytes == 0 {
		cfg.RingBytes = DefaultRingBytes
	}
	if cfg.MaxNetns == 0 {
		cfg.MaxNetns = 4096
	}
	if cfg.MaxOwned == 0 {
		cfg.MaxOwned = 65536
	}
	var s traceSpecs
	if err := loader.AssignSpecs(spec, &s, "trace"); err != nil {
		return nil, err
	}
	s.Events.MaxEntries = cfg.RingBytes
	s.OwnedSocks.MaxEntries = cfg.MaxOwned
	s.OwnedPorts.MaxEntries = max(cfg.MaxOwned/16, 256)
	if err := (loader.CommSpecs{Count: s.CommCount, Names: s.CommNames}).Set(cfg.Comms); err != nil {
		return nil, err
	}
	if err := (loader.NetnsSpecs{Direct: s.NetnsDirect, Overflow: s.NetnsOverflow, Mask: s.NetnsMask, Filter: s.FilterNetns}).Size(cfg.MaxNetns, cfg.FilterNetns); err != nil {
		return nil, err
	}
	var ports [65536 / 32]uint32
	for _, p := range cfg.Ports {
		ports[p/32] |= 1 << (p % 32)
	}
	if err := loader.SetConstants(
		loader.Const(s.FilterPorts, len(cfg.Ports) > 0), loader.Const(s.FilterFamily, cfg.Family), loader.Const(s.PortBits, ports),
		loader.Const(s.ConnectSyscall, cfg.ConnectSyscall), loader.Const(s.OwnerPid, cfg.Pid),
	); err != nil {
		return nil, err
	}
	needs := []loader.Need{loader.NeedBTF, loader.NeedRingBuf, loader.NeedTpBTF, loader.NeedTaskStorage, loader.NeedIterTaskFile}
	t := &Tracer{cfg: cfg}
	if cfg.ConnectSyscall {
		needs = append(needs, loader.NeedSyscallTracepoints)
		err = spec.LoadAndAssign(&t.objs, loader.LoadOptions())
	} else {
		// Without --connect-syscall the syscall programs are not loaded at all.
		var core struct {
			traceMaps
			traceCorePrograms
		}
		err = spec.LoadAndAssign(&core, loader.LoadOptions())
		t.objs.traceMaps, t.objs.traceCorePrograms = core.traceMaps, core.traceCorePrograms
	}
	if err != nil {
		return nil, loader.Missing("load the trace programs", err, needs...)
	}
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	t.netns = loader.NewNetnsTable(t.objs.NetnsDirect, t.objs.NetnsOverflow, t.objs.NetnsFew, cfg.MaxNetns)
	if _, err := t.netns.SelectAll(cfg.Netns); err != nil {
		return nil, err
	}

	if cfg.ConnectSyscall {
		// Syscall hooks first: a connect() that starts between the two attachments must find
		// its call.
		l, err := link.Tracepoint("syscalls", "sys_enter_connect", t.objs.OnConnectEnter, nil)
		if err != nil {
			return nil, loader.Missing("attach tracepoint syscalls/sys_enter_connect", err, loader.NeedSyscallTracepoints)
		}
		t.links = append(t.links, l)
		if l, err = link.Tracepoint("syscalls", "sys_exit_connect", t.objs.OnConnectExit, nil); err != nil {
			return nil, loader.Missing("attach tracepoint syscalls/sys_exit_connect", err, loader.NeedSyscallTracepoints)
		}
		t.links = append(t.links, l)
	}
	// on_state first: its twin must run after it, to find it active only when it was interrupted.
	for _, p := range []*ebpf.Program{t.objs.OnState, t.objs.OnStateNested} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			return nil, loader.Missing("attach tp_btf/inet_sock_set_state", err, loader.NeedTpBTF)
		}
		t.links = append(t.links, l)
	}

	if t.ring, err = loader.NewRing(t.objs.Events); err != nil {
		return nil, err
	}
	if err := t.walkOwners(); err != nil {
		return nil, err
	}
	ok = true
	return t, nil
}

// The trace object's programs in two sets, so that the syscall ones load only when asked for.
type traceCorePrograms struct {
	OnState       *ebpf.Program `ebpf:"on_state"`
	OnStateNested *ebpf.Program `ebpf:"on_state_nested"`
	DumpOwners    *ebpf.Program `ebpf:"dump_owners"`
}

type traceSyscallPrograms struct {
	OnConnectEnter *ebpf.Program `ebpf:"on_connect_enter"`
	OnConnectExit  *ebpf.Program `ebpf:"on_connect_exit"`
}

// Owner is a socket file of a process, from the owner walk: who owns the socket at address Sk.
type Owner struct {
	Sk    uint64
	Netns uint32
	Inode uint32
	Pid   uint32
	Comm  [16]byte
	Port  uint16 // local port
	State uint8  // TCP state (a listener's children are owned by its owner)
}

// decodeOwners reads owner_records.
func decodeOwners(b []byte) []Owner {
	out := make([]Owner, 0, len(b)/loader.OwnerRecordSize)
	le := binary.LittleEndian
	for ; len(b) >= loader.OwnerRecordSize; b = b[loader.OwnerRecordSize:] {
		o := Owner{Inode: le.Uint32(b[0:]), Pid: le.Uint32(b[4:]), Sk: le.Uint64(b[24:]), Netns: le.Uint32(b[32:]), Port: le.Uint16(b[36:]), State: b[38]}
		copy(o.Comm[:], b[8:24])
		out = append(out, o)
	}
	return out
}

// walkOwners runs the owner walk over the selected namespaces and keeps what it finds for
// TakeOwners: the owners of the sockets that existed before the trace, or before their
// namespace was selected.
func (t *Tracer) walkOwners() error {
	it, err := link.AttachIter(link.IterOptions{Program: t.objs.DumpOwners})
	if err != nil {
		return loader.Missing("attach iter/task_file", err, loader.NeedIterTaskFile)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return fmt.Errorf("run iter/task_file: %w", err)
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil {
		return fmt.Errorf("run iter/task_file: %w", err)
	}
	owners := decodeOwners(b)
	if err := t.enterOwned(owners); err != nil {
		return err
	}
	t.mu.Lock()
	t.seeds = append(t.seeds, owners...)
	t.mu.Unlock()
	return nil
}

// enterOwned puts the sockets of the wanted owners among those a walk found into the owner
// filter's tables (bpf/trace.bpf.c), which the kernel fills itself only for sockets it sees start.
// A socket that closed since the walk stays until its address is reused: the table is a superset.
func (t *Tracer) enterOwned(owners []Owner) error {
	if t.cfg.Pid == 0 && len(t.cfg.Comms) == 0 {
		return nil
	}
	var names [][16]byte
	for _, c := range t.cfg.Comms {
		var b [16]byte
		copy(b[:15], c)
		names = append(names, b)
	}
	for _, o := range owners {
		if t.cfg.Pid != 0 && o.Pid != t.cfg.Pid {
			continue
		}
		if len(names) > 0 && !slices.Contains(names, loader.CommKey(o.Comm)) {
			continue
		}
		if err := t.objs.OwnedSocks.Update(o.Sk, uint8(1), ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("owner filter: %w (raise the table's size)", err)
		}
		if o.State == tcpListen {
			k := traceOwnedPort{Netns: o.Netns, Port: o.Port}
			if err := t.objs.OwnedPorts.Update(k, uint32(1), ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
				return fmt.Errorf("owner filter: %w", err)
			}
		}
	}
	return nil
}

// TakeOwners returns the owners found by the walks since the last call.
func (t *Tracer) TakeOwners() []Owner {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.seeds
	t.seeds = nil
	return s
}

// SetNetns replaces the set of traced network namespaces (used only with FilterNetns). The owners
// of the sockets already in a namespace that joins are walked for TakeOwners.
func (t *Tracer) SetNetns(inodes []uint32) error {
	added, err := t.netns.SelectAll(inodes)
	if err != nil {
		return err
	}
	if added && t.ring != nil {
		return t.walkOwners()
	}
	return nil
}

// Drain hands every record the kernel has committed to fn, in order, and returns how many.
// Records are struct event_v4 or event_v6 (bpf/trace.h), shortened where they carry no command
// name; events/trace.Tracker reads them. rec is valid only during the call.
func (t *Tracer) Drain(fn func(rec []byte)) int { return t.ring.Drain(fn) }

// Detach stops the programs. Once it returns, every record they wrote is committed: Drain reads
// the rest.
func (t *Tracer) Detach() {
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
}

// tcpListen is TCP_LISTEN (include/net/tcp_states.h).
const tcpListen = 10

// Lost counts events the kernel produced but sockscope could not report.
type Lost struct {
	RingFull uint64 // the ring buffer had no room
	// Nested counts program runs the kernel skipped because the program was already running on
	// that CPU (an interrupt's softirq work nested in it), less the transitions on_state's twin
	// took over (bpf/nested.h).
	Nested uint64
	// Owned counts sockets the owner filter (Pid, Comms) could not follow: its table was full.
	// Their later transitions are missing.
	Owned uint64
}

// Total is all lost events.
func (l Lost) Total() uint64 { return l.RingFull + l.Nested + l.Owned }

// Lost returns what was lost since the programs were loaded.
func (t *Tracer) Lost() (Lost, error) {
	counts, err := loader.ReadLost(t.objs.Lost)
	if err != nil {
		return Lost{}, err
	}
	nested, err := loader.SkippedNotRescued(t.objs.OnState, t.objs.Nested)
	if err != nil {
		return Lost{}, err
	}
	l := Lost{RingFull: counts[loader.LostRingFull], Owned: counts[loader.LostOwnedFull], Nested: nested}
	if t.objs.OnConnectEnter != nil {
		// The syscall tracepoints have no twin: a skipped connect() entry or return is lost.
		misses, err := loader.RecursionMisses(t.objs.OnConnectEnter, t.objs.OnConnectExit)
		if err != nil {
			return Lost{}, err
		}
		l.Nested += misses
	}
	return l, nil
}

// Close detaches the programs and frees the maps and the ring buffer.
func (t *Tracer) Close() error {
	t.Detach()
	if t.ring != nil {
		t.ring.Close()
	}
	closeAll(t.objs.OnState, t.objs.OnStateNested, t.objs.DumpOwners, t.objs.OnConnectEnter, t.objs.OnConnectExit)
	return t.objs.traceMaps.Close()
}

// traceLoaded is what Open loads: the maps and the programs asked for.
type traceLoaded struct {
	traceMaps
	traceCorePrograms
	traceSyscallPrograms
}

func (p *traceCorePrograms) Close() error {
	return closeAll(p.OnState, p.OnStateNested, p.DumpOwners)
}

func (p *traceSyscallPrograms) Close() error {
	return closeAll(p.OnConnectEnter, p.OnConnectExit)
}

func closeAll(progs ...*ebpf.Program) error {
	for _, p := range progs {
		if p != nil {
			p.Close()
		}
	}
	return nil
}
