// Package counters loads the exporter's in-kernel counters (bpf/export.bpf.c): transitions,
// connect outcomes and times, retransmits, resets and the socket gauges, per counted namespace,
// read at each scrape with no per-event work in user space.
package counters

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/sockscope/sockscope/loader"
)

// Counter kinds of the exporter's in-kernel counters, as Counters reports them.
const (
	KindTransition    = 1 // Arg = from<<8 | to
	KindConnect       = 2 // Arg = errno of the outcome, 0 = success
	KindDuration      = 3 // Arg = bucket index; len(DurationBuckets) = above the last bound
	KindDurationSum   = 4 // Value in nanoseconds
	KindRetransmit    = 5
	KindResetSent     = 6
	KindResetReceived = 7
	KindMoveIn        = 8 // Arg = state: full sockets that entered it (the socket gauges, see Moves)
	KindMoveOut       = 9 // Arg = state: full sockets that left it
)

// Kinds of the rare counters (bpf/export.h).
const (
	rareTransition = 1
	rareConnect    = 2
)

// DurationBuckets are the upper bounds of the connect-duration histogram kept in the kernel:
// from 25 µs (a loopback handshake) to 10 s (SYN retransmits at 1 s, 3 s, 7 s).
var DurationBuckets = []time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond,
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second,
}

// TCP states, as include/net/tcp_states.h numbers them.
const (
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpSynRecv     = 3
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpTimeWait    = 6
	tcpClose       = 7
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpListen      = 10
	tcpClosing     = 11
)

// countedTransitions are the transitions counted in place (netns_counters.transitions[1:]);
// others go to the rare map, exactly but at a hash lookup's cost.
var countedTransitions = [][2]uint8{
	{tcpClose, tcpSynSent}, {tcpClose, tcpListen}, {tcpSynSent, tcpEstablished}, {tcpSynSent, tcpClose},
	{tcpSynSent, tcpSynRecv}, {tcpListen, tcpSynRecv}, {tcpListen, tcpClose}, {tcpSynRecv, tcpEstablished},
	{tcpSynRecv, tcpClose}, {tcpSynRecv, tcpFinWait1}, {tcpEstablished, tcpFinWait1}, {tcpEstablished, tcpCloseWait},
	{tcpEstablished, tcpClose}, {tcpFinWait1, tcpFinWait2}, {tcpFinWait1, tcpClosing}, {tcpFinWait1, tcpClose},
	{tcpFinWait2, tcpClose}, {tcpClosing, tcpClose}, {tcpCloseWait, tcpLastAck}, {tcpCloseWait, tcpClose},
	{tcpLastAck, tcpClose}, {tcpFinWait1, tcpTimeWait}, {tcpFinWait2, tcpTimeWait}, {tcpClosing, tcpTimeWait},
}

// countedErrnos are the connect outcomes counted in place (netns_counters.connects[1:]).
var countedErrnos = []syscall.Errno{
	syscall.ECONNREFUSED, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EADDRNOTAVAIL,
	syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EACCES, syscall.EPERM, syscall.ENETDOWN,
	syscall.EHOSTDOWN, syscall.ENOBUFS, syscall.EPROTO, syscall.EADDRINUSE, syscall.EMSGSIZE,
}

// Config sizes the exporter's kernel maps; zero values take the defaults.
type Config struct {
	MaxNetns      uint32 // namespaces counted at once (default 4096)
	MaxCounters   uint32 // rare counters over all namespaces: unusual transitions and errnos (default 65536)
	MaxHandshakes uint32 // connects in progress whose duration is measured (default 16384)
	MaxListeners  uint32 // listening sockets of the counted namespaces (default 65536)
}

// Counter is one in-kernel counter, summed over CPUs.
type Counter struct {
	Netns uint32
	Kind  uint16
	Arg   uint16
	Value uint64
}

type namedProgram struct {
	name string
	prog *ebpf.Program
}

// Counters is the attached `export` programs and their counters.
//
// Each counted namespace has a slot, an element of the per-CPU counters array. A slot that a
// namespace gives up goes to the end of the free list, so that it is given again as late as
// possible, and it is zeroed when it is given: a program that found the old namespace's slot
// just before it was taken away has long finished by then.
type Counters struct {
	objs  exportObjects
	netns *loader.NetnsTable
	slots map[uint32]uint32 // counted inode -> slot
	free  []uint32
	progs []namedProgram
	links []link.Link
	// The socket gauges' iterator: a namespace's full sockets.
	walk   *link.Iter
	walkMu sync.Mutex
	cfg    Config
	ncpu   int
	// Reused between reads.
	per, twin []exportNetnsCounters
}

// Needs says in one line what this kernel lacks of what export needs (its counters, its
// socket gauges and the socket iterators), or nil: the command checks it before loading
// anything, so that one line names all of it.
func Needs() error {
	return loader.Lacking("start the exporter", loader.NeedBTF, loader.NeedTpBTF, loader.NeedMapWalk, loader.NeedIterTCP, loader.NeedIterTaskFile)
}

// Open loads and attaches the exporter's counters. Nothing is counted until SetNetns.
func Open(cfg Config) (*Counters, error) {
	if cfg.MaxNetns == 0 {
		cfg.MaxNetns = 4096
	}
	if cfg.MaxCounters == 0 {
		cfg.MaxCounters = 65536
	}
	if cfg.MaxHandshakes == 0 {
		cfg.MaxHandshakes = 16384
	}
	cfg.MaxHandshakes = 1 << bits.Len32(cfg.MaxHandshakes-1)
	if cfg.MaxListeners == 0 {
		cfg.MaxListeners = 65536
	}
	if err := loader.Memlock(); err != nil {
		return nil, err
	}
	spec, err := loadExport()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	var specs exportSpecs
	if err := loader.AssignSpecs(spec, &specs, "exporter's"); err != nil {
		return nil, err
	}
	ns := loader.NetnsSpecs{Direct: specs.NetnsDirect, Overflow: specs.NetnsOverflow, Mask: specs.NetnsMask, Filter: specs.FilterNetns}
	if err := ns.Size(cfg.MaxNetns, true); err != nil {
		return nil, err
	}
	// Slot 0 is no slot; the twin's copies follow the main program's (bpf/export.bpf.c).
	specs.Counters.MaxEntries = 2 * (cfg.MaxNetns + 1)
	specs.Rare.MaxEntries = cfg.MaxCounters
	specs.Handshakes.MaxEntries = cfg.MaxHandshakes
	specs.Listeners.MaxEntries = cfg.MaxListeners
	if len(DurationBuckets) != 18 {
		return nil, fmt.Errorf("internal: %d duration buckets, the BPF side has 18", len(DurationBuckets))
	}
	var bounds [18]uint64
	for i, d := range DurationBuckets {
		bounds[i] = uint64(d.Nanoseconds())
	}
	var transSlot [256]uint8
	for i, t := range countedTransitions {
		transSlot[t[0]<<4|t[1]] = uint8(i + 1)
	}
	var errnoSlot [256]uint8
	for i, e := range countedErrnos {
		errnoSlot[e] = uint8(i + 1)
	}
	nargs, err := loader.TracepointArgs("tcp_retransmit_skb")
	if err != nil {
		return nil, err
	}
	if err := loader.SetConstants(
		loader.Const(specs.BucketLeNs, bounds), loader.Const(specs.TransSlot, transSlot), loader.Const(specs.ErrnoSlot, errnoSlot),
		loader.Const(specs.HandshakeMask, cfg.MaxHandshakes-1), loader.Const(specs.RetransmitHasErr, nargs >= 3),
		loader.Const(specs.TwinArea, cfg.MaxNetns+1),
	); err != nil {
		return nil, err
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	e := &Counters{cfg: cfg, ncpu: ncpu, slots: map[uint32]uint32{}}
	for s := uint32(1); s <= cfg.MaxNetns; s++ {
		e.free = append(e.free, s)
	}
	if err := spec.LoadAndAssign(&e.objs, loader.LoadOptions()); err != nil {
		return nil, loader.Missing("load the exporter's programs", err, loader.NeedBTF, loader.NeedTpBTF, loader.NeedMapWalk)
	}
	e.netns = loader.NewNetnsTable(e.objs.NetnsDirect, e.objs.NetnsOverflow, e.objs.NetnsFew, cfg.MaxNetns)
	e.progs = []namedProgram{
		// The twin right after its main program: the kernel runs them in the order they attach.
		{"count_state", e.objs.CountState}, {"count_state_nested", e.objs.CountStateNested}, {"count_retransmit", e.objs.CountRetransmit},
		{"count_reset_sent", e.objs.CountResetSent}, {"count_reset_received", e.objs.CountResetReceived},
	}
	for _, p := range e.progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err != nil {
			e.Close()
			return nil, loader.Missing("attach "+p.name, err, loader.NeedTpBTF)
		}
		e.links = append(e.links, l)
	}
	if err := e.attachGauges(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Warnings are what this kernel makes the exporter's numbers lack, one line each: they are
// right for what they count, but count less than their names say.
func (e *Counters) Warnings() []error {
	if err := loader.Has(loader.NeedEveryReset); err != nil {
		return []error{fmt.Errorf("this kernel lacks %s (%v)", loader.NeedEveryReset.Name(), err)}
	}
	return nil
}

// Close detaches the programs and frees the maps.
func (e *Counters) Close() error {
	for _, l := range e.links {
		l.Close()
	}
	if e.walk != nil {
		e.walk.Close()
	}
	return e.objs.Close()
}

// SetNetns makes the kernel count exactly these namespaces from now on. A namespace that leaves
// the set loses its counters: if it comes back, it starts from zero. Namespaces leave before
// others join, so a swap at exact capacity (--max-netns) never finds the maps full.
func (e *Counters) SetNetns(netns []uint32) error {
	want := make(map[uint32]bool, len(netns))
	for _, ino := range netns {
		want[ino] = true
	}
	if len(want) > int(e.cfg.MaxNetns) {
		return fmt.Errorf("%d network namespaces to count, the limit is %d (--max-netns)", len(want), e.cfg.MaxNetns)
	}
	next := make(map[uint32]uint32, len(want))
	var released []uint32
	for ino, s := range e.slots {
		if want[ino] {
			next[ino] = s
		} else {
			released = append(released, s)
		}
	}
	// The leaving ones first, then the joining ones, each slot zeroed before it is published.
	kept := make(map[uint32]uint32, len(next))
	for ino, s := range next {
		kept[ino] = s
	}
	if err := e.netns.Set(kept); err != nil {
		return err
	}
	if len(released) > 0 {
		if err := e.dropListeners(func(ino uint32) bool { _, ok := kept[ino]; return ok }); err != nil {
			return err
		}
	}
	e.free = append(e.free, released...)
	for ino := range want {
		if _, ok := next[ino]; ok {
			continue
		}
		s := e.free[0]
		e.free = e.free[1:]
		if err := e.zero(s); err != nil {
			return err
		}
		next[ino] = s
	}
	if err := e.netns.Set(next); err != nil {
		return err
	}
	e.slots = next
	return nil
}

// zero clears a slot's counters, in place (both copies) and in the rare map.
func (e *Counters) zero(slot uint32) error {
	for _, s := range []uint32{slot, e.twinSlot(slot)} {
		if err := e.objs.Counters.Put(s, make([]exportNetnsCounters, e.ncpu)); err != nil {
			return fmt.Errorf("clear counters: %w", err)
		}
	}
	return loader.DeleteKeys(e.objs.Rare, func(k exportRareKey) bool { return k.Slot == slot })
}

// Counters reads every counter that is not zero, summed over CPUs, appending to out: one lookup
// per counted namespace, and the rare map.
func (e *Counters) Counters(out []Counter) ([]Counter, error) {
	byslot := make(map[uint32]uint32, len(e.slots))
	for ino, s := range e.slots {
		byslot[s] = ino
		if err := e.readSlot(s); err != nil {
			return out, err
		}
		var sum exportNetnsCounters
		for i := range e.per {
			p := &e.per[i]
			for j := range sum.Transitions {
				sum.Transitions[j] += p.Transitions[j]
			}
			for j := range sum.Connects {
				sum.Connects[j] += p.Connects[j]
			}
			for j := range sum.Duration {
				sum.Duration[j] += p.Duration[j]
			}
			sum.DurationSumNs += p.DurationSumNs
			sum.Retransmits += p.Retransmits
			sum.ResetsSent += p.ResetsSent
			sum.ResetsReceived += p.ResetsReceived
			for j := range sum.GaugeIn {
				sum.GaugeIn[j] += p.GaugeIn[j]
				sum.GaugeOut[j] += p.GaugeOut[j]
			}
		}
		add := func(kind, arg uint16, v uint64) {
			if v != 0 {
				out = append(out, Counter{Netns: ino, Kind: kind, Arg: arg, Value: v})
			}
		}
		for i, t := range countedTransitions {
			add(KindTransition, uint16(t[0])<<8|uint16(t[1]), sum.Transitions[i+1])
		}
		add(KindConnect, 0, sum.Connects[0])
		for i, errno := range countedErrnos {
			add(KindConnect, uint16(errno), sum.Connects[i+1])
		}
		for i, v := range sum.Duration {
			add(KindDuration, uint16(i), v)
		}
		add(KindDurationSum, 0, sum.DurationSumNs)
		add(KindRetransmit, 0, sum.Retransmits)
		add(KindResetSent, 0, sum.ResetsSent)
		add(KindResetReceived, 0, sum.ResetsReceived)
		for st := range sum.GaugeIn {
			add(KindMoveIn, uint16(st), sum.GaugeIn[st])
			add(KindMoveOut, uint16(st), sum.GaugeOut[st])
		}
	}
	var k exportRareKey
	var per []uint64
	it := e.objs.Rare.Iterate()
	for it.Next(&k, &per) {
		ino, ok := byslot[k.Slot]
		if !ok {
			continue // a slot given up meanwhile
		}
		var v uint64
		for _, x := range per {
			v += x
		}
		kind := uint16(KindTransition)
		if k.Kind == rareConnect {
			kind = KindConnect
		}
		out = append(out, Counter{Netns: ino, Kind: kind, Arg: k.Arg, Value: v})
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("read rare counters: %w", err)
	}
	return out, nil
}

// twinSlot is where count_state_nested keeps its copy of a slot's counters: after every slot of
// the main programs (bpf/export.bpf.c's twin_area).
func (e *Counters) twinSlot(slot uint32) uint32 { return slot + e.cfg.MaxNetns + 1 }

// readSlot reads a slot's per-CPU counters into e.per: the main program's copy, then the twin's
// after it, so that summing e.per sums both.
func (e *Counters) readSlot(slot uint32) error {
	if err := e.objs.Counters.Lookup(slot, &e.per); err != nil {
		return fmt.Errorf("read counters: %w", err)
	}
	if err := e.objs.Counters.Lookup(e.twinSlot(slot), &e.twin); err != nil {
		return fmt.Errorf("read counters: %w", err)
	}
	e.per = append(e.per, e.twin...)
	return nil
}

// Lost is what the kernel side could not count.
type Lost struct {
	CountersFull   uint64 // rare counts dropped: their map was full (raise --max-counters)
	HandshakesFull uint64 // connect durations not measured: another connect took their place
	ListenersFull  uint64 // listeners whose request sockets are not counted: their table was full
}

// Lost reads the per-CPU lost counts.
func (e *Counters) Lost() (Lost, error) {
	l, err := loader.ReadLost(e.objs.Lost)
	return Lost{CountersFull: l[loader.LostRareFull], HandshakesFull: l[loader.LostHandshakes], ListenersFull: l[loader.LostListenersFull]}, err
}

// MapUsage is how full one of the exporter's kernel maps is.
type MapUsage struct {
	Name     string
	Entries  int
	Capacity int
}

// Usage counts the entries of each map: counters are the nonzero counters of the last read
// (given as n), tracked the counted namespaces, rare the rare counters (the map that can fill),
// handshakes the connects in progress.
func (e *Counters) Usage(counters int) ([]MapUsage, error) {
	rare, err := loader.Keys[exportRareKey](e.objs.Rare)
	if err != nil {
		return nil, fmt.Errorf("count rare counters: %w", err)
	}
	hs, err := e.handshakes()
	if err != nil {
		return nil, err
	}
	return []MapUsage{
		{"counters", counters, int(e.cfg.MaxCounters)},
		{"tracked", len(e.slots), int(e.cfg.MaxNetns)},
		{"rare", len(rare), int(e.cfg.MaxCounters)},
		{"handshakes", hs, int(e.cfg.MaxHandshakes)},
	}, nil
}

// handshakes counts the connects in progress in the direct-mapped table.
func (e *Counters) handshakes() (int, error) {
	const batch = 4096
	keys := make([]uint32, batch)
	vals := make([]exportHandshake, batch)
	n := 0
	var cursor ebpf.MapBatchCursor
	for {
		got, err := e.objs.Handshakes.BatchLookup(&cursor, keys, vals, nil)
		for _, v := range vals[:got] {
			if v.Sk != 0 {
				n++
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("count handshakes: %w", err)
		}
	}
}

// ProgramStats is one program's run statistics. The kernel keeps runs and run time only while
// BPF statistics are enabled (ebpf.EnableStats); it always counts recursion misses: runs skipped
// because the program was already running on that CPU (an interrupt nested in it).
type ProgramStats struct {
	Name    string
	Runs    uint64
	RunTime time.Duration
	// Lost is the events lost to recursion misses: count_state's misses less the transitions
	// its twin, count_state_nested, took over (bpf/nested.h); the twin's own misses lose nothing;
	// every other program's misses are lost.
	Lost uint64
}

// Stats reads each attached program's run count and total run time.
func (e *Counters) Stats() ([]ProgramStats, error) {
	out := make([]ProgramStats, 0, len(e.progs))
	for _, p := range e.progs {
		st, err := p.prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("program statistics: %w", err)
		}
		lost := st.RecursionMisses
		switch p.prog {
		case e.objs.CountState:
			if lost, err = loader.SkippedNotRescued(p.prog, e.objs.Nested); err != nil {
				return nil, err
			}
		case e.objs.CountStateNested:
			lost = 0
		}
		out = append(out, ProgramStats{Name: p.name, Runs: st.RunCount, RunTime: st.Runtime, Lost: lost})
	}
	return out, nil
}
