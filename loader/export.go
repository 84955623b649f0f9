package loader

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Counter kinds of the exporter's in-kernel counters (bpf/export.h).
const (
	KindTransition    = 1 // Arg = from<<8 | to
	KindConnect       = 2 // Arg = errno of the outcome, 0 = success
	KindDuration      = 3 // Arg = bucket index; len(DurationBuckets) = above the last bound
	KindDurationSum   = 4 // Value in nanoseconds
	KindRetransmit    = 5
	KindResetSent     = 6
	KindResetReceived = 7
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

// ExportConfig sizes the exporter's kernel maps; zero values take the defaults.
type ExportConfig struct {
	MaxNetns      uint32 // namespaces counted at once (default 4096)
	MaxCounters   uint32 // counters over all namespaces (default 65536; ~40 per busy namespace)
	MaxHandshakes uint32 // connects in progress whose duration is measured (default 16384)
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

// Exporter is the attached `export` programs and their counters.
type Exporter struct {
	objs    exportObjects
	tracked netnsSet // mirrors the tracked map
	progs   []namedProgram
	links   []link.Link
	cfg     ExportConfig
	ncpu    int
	// Reused between reads.
	keys []exportCounterKey
	vals []uint64
}

// OpenExport loads and attaches the exporter's counters. Nothing is counted until Track.
func OpenExport(cfg ExportConfig) (*Exporter, error) {
	if cfg.MaxNetns == 0 {
		cfg.MaxNetns = 4096
	}
	if cfg.MaxCounters == 0 {
		cfg.MaxCounters = 65536
	}
	if cfg.MaxHandshakes == 0 {
		cfg.MaxHandshakes = 16384
	}
	if err := memlock(); err != nil {
		return nil, err
	}
	spec, err := loadExport()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	spec.Maps["tracked"].MaxEntries = cfg.MaxNetns
	spec.Maps["counters"].MaxEntries = cfg.MaxCounters
	spec.Maps["handshakes"].MaxEntries = cfg.MaxHandshakes
	buckets := spec.Variables["bucket_le_ns"]
	if int(buckets.Size()) != 8*len(DurationBuckets) {
		return nil, fmt.Errorf("internal: %d duration buckets, the BPF side has %d", len(DurationBuckets), buckets.Size()/8)
	}
	bounds := make([]uint64, len(DurationBuckets))
	for i, d := range DurationBuckets {
		bounds[i] = uint64(d.Nanoseconds())
	}
	if err := buckets.Set(bounds); err != nil {
		return nil, fmt.Errorf("set bucket_le_ns: %w", err)
	}
	nargs, err := tracepointArgs("tcp_retransmit_skb")
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["retransmit_has_err"].Set(nargs >= 3); err != nil {
		return nil, fmt.Errorf("set retransmit_has_err: %w", err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	e := &Exporter{cfg: cfg, ncpu: ncpu}
	if err := spec.LoadAndAssign(&e.objs, nil); err != nil {
		return nil, missing("load the exporter's programs", err, featBTF, featTpBTF)
	}
	e.progs = []namedProgram{
		{"count_state", e.objs.CountState}, {"count_retransmit", e.objs.CountRetransmit},
		{"count_reset_sent", e.objs.CountResetSent}, {"count_reset_received", e.objs.CountResetReceived},
	}
	for _, p := range e.progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err != nil {
			e.Close()
			return nil, missing("attach "+p.name, err, featTpBTF)
		}
		e.links = append(e.links, l)
	}
	debug.FreeOSMemory() // the kernel BTF parsed for CO-RE is garbage now
	return e, nil
}

// Warnings are what this kernel makes the exporter's numbers lack, one line each: they are
// right for what they count, but count less than their names say.
func (e *Exporter) Warnings() []error {
	if err := probed()[featEveryReset]; err != nil {
		return []error{fmt.Errorf("this kernel lacks %s (%v)", featureDefs[featEveryReset].name, err)}
	}
	return nil
}

// Close detaches the programs and frees the maps.
func (e *Exporter) Close() error {
	for _, l := range e.links {
		l.Close()
	}
	return e.objs.Close()
}

// SetTracked makes the kernel count exactly these namespaces from now on, and deletes the
// counters of every other namespace: a namespace that leaves the set and comes back starts from
// zero, and the counter map holds only namespaces that exist.
func (e *Exporter) SetTracked(netns []uint32) error {
	if len(netns) > int(e.cfg.MaxNetns) {
		return fmt.Errorf("%d network namespaces to count, the limit is %d (--max-netns)", len(netns), e.cfg.MaxNetns)
	}
	if _, err := e.tracked.set(e.objs.Tracked, netns); err != nil {
		return err
	}
	// A program that looked the namespace up just before it left the set may still add a
	// counter; the next call deletes it.
	return deleteKeys(e.objs.Counters, func(k exportCounterKey) bool { return !e.tracked[k.Netns] })
}

// Counters reads every counter, summed over CPUs, appending to out. A scrape is a few batch
// lookups: 256 counters per system call.
func (e *Exporter) Counters(out []Counter) ([]Counter, error) {
	const batch = 256
	if len(e.keys) != batch {
		e.keys = make([]exportCounterKey, batch)
		e.vals = make([]uint64, batch*e.ncpu)
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := e.objs.Counters.BatchLookup(&cursor, e.keys, e.vals, nil)
		for i := range n {
			var sum uint64
			for _, v := range e.vals[i*e.ncpu : (i+1)*e.ncpu] {
				sum += v
			}
			k := e.keys[i]
			out = append(out, Counter{Netns: k.Netns, Kind: k.Kind, Arg: k.Arg, Value: sum})
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read counters: %w", err)
		}
	}
}

// ExportLost is what the kernel side could not count because a map was full.
type ExportLost struct {
	CountersFull   uint64 // increments dropped: the counter map was full (raise --max-counters)
	HandshakesFull uint64 // connect durations not measured: too many connects in progress
}

// Lost reads the per-CPU lost counts.
func (e *Exporter) Lost() (ExportLost, error) {
	var l ExportLost
	for i, dst := range []*uint64{&l.CountersFull, &l.HandshakesFull} {
		vals := make([]uint64, e.ncpu)
		if err := e.objs.Lost.Lookup(uint32(i), &vals); err != nil {
			return l, fmt.Errorf("read lost counts: %w", err)
		}
		for _, v := range vals {
			*dst += v
		}
	}
	return l, nil
}

// MapUsage is how full one of the exporter's kernel maps is.
type MapUsage struct {
	Name     string
	Entries  int
	Capacity int
}

// Usage counts the entries of each map (counters: as of the last read, given as n).
func (e *Exporter) Usage(counters int) ([]MapUsage, error) {
	hs, err := keys[uint64](e.objs.Handshakes)
	if err != nil {
		return nil, fmt.Errorf("count handshakes: %w", err)
	}
	return []MapUsage{
		{"counters", counters, int(e.cfg.MaxCounters)},
		{"tracked", len(e.tracked), int(e.cfg.MaxNetns)},
		{"handshakes", len(hs), int(e.cfg.MaxHandshakes)},
	}, nil
}

// ProgramStats is one program's run statistics. The kernel keeps runs and run time only while
// BPF statistics are enabled (ebpf.EnableStats); it always counts recursion misses: runs skipped
// because the program was already running on that CPU (an interrupt nested in it), whose counts
// are lost.
type ProgramStats struct {
	Name            string
	Runs            uint64
	RunTime         time.Duration
	RecursionMisses uint64
}

// Stats reads each attached program's run count and total run time.
func (e *Exporter) Stats() ([]ProgramStats, error) {
	out := make([]ProgramStats, 0, len(e.progs))
	for _, p := range e.progs {
		st, err := p.prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("program statistics: %w", err)
		}
		out = append(out, ProgramStats{Name: p.name, Runs: st.RunCount, RunTime: st.Runtime, RecursionMisses: st.RecursionMisses})
	}
	return out, nil
}
