// Package loader loads sockscope's kernel programs, attaches them, keeps their filter maps
// current and reads what they produce: the ring buffer of TCP events and the lost-event counter.
// It is the only package that talks to the kernel's BPF interfaces; events/ decodes what it reads.
package loader

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// Address families, as the kernel numbers them.
const (
	AFInet  = 2
	AFInet6 = 10
)

// TraceConfig selects what the kernel sends up; everything not selected is dropped in the kernel.
type TraceConfig struct {
	// FilterNetns restricts events to the network namespaces in Netns (which may start empty
	// and be filled later with SetNetns, e.g. when a selected container starts).
	FilterNetns bool
	Netns       []uint32
	Ports       []uint16 // local or remote port; empty = all
	Family      uint8    // AFInet or AFInet6; 0 = both
	Pid         uint32   // owner's tgid; 0 = all
	State       uint8    // transitions from or to this TCP state; 0 = all
	// ConnectErrorsOnly drops state transitions and successful connects.
	ConnectErrorsOnly bool
	// RingBytes is the ring buffer size (a power of two, at least a page); 0 = DefaultRingBytes.
	RingBytes uint32
}

// DefaultRingBytes holds about 40,000 events: 160 ms at 250,000 transitions/s. The ring is
// mapped twice into the reader (the kernel's wrap-around trick) and all of it is resident, so it
// is most of sockscope's memory.
const DefaultRingBytes = 4 << 20

// Tracer is the attached `trace` programs and the reader of their ring buffer.
type Tracer struct {
	objs   traceObjects
	links  []link.Link
	reader *ringbuf.Reader
	netns  netnsSet
}

// OpenTrace loads and attaches the programs behind `sockscope trace`. Call Close to detach.
func OpenTrace(cfg TraceConfig) (*Tracer, error) {
	if err := memlock(); err != nil {
		return nil, err
	}
	if err := mountTracefs(); err != nil {
		return nil, err
	}
	spec, err := loadTrace()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	if cfg.RingBytes == 0 {
		cfg.RingBytes = DefaultRingBytes
	}
	spec.Maps["events"].MaxEntries = cfg.RingBytes
	consts := map[string]any{
		"filter_netns":        cfg.FilterNetns,
		"filter_ports":        len(cfg.Ports) > 0,
		"filter_family":       cfg.Family,
		"filter_pid":          cfg.Pid,
		"filter_state":        cfg.State,
		"connect_errors_only": cfg.ConnectErrorsOnly,
	}
	for name, v := range consts {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("BPF object has no variable %q", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}

	t := &Tracer{}
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		return nil, missing("load the trace programs", err, featBTF, featRingBuf, featTpBTF, featSkStorage, featTaskStorage, featIterTaskFile)
	}
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	for _, p := range cfg.Ports {
		if err := t.objs.PortFilter.Put(p, uint8(1)); err != nil {
			return nil, fmt.Errorf("set port filter: %w", err)
		}
	}
	if err := t.SetNetns(cfg.Netns); err != nil {
		return nil, err
	}

	// Syscall hooks first: a connect() that starts between the two attachments must find its call.
	l, err := link.Tracepoint("syscalls", "sys_enter_connect", t.objs.OnConnectEnter, nil)
	if err != nil {
		return nil, missing("attach tracepoint syscalls/sys_enter_connect", err, featSyscallTracepoints)
	}
	t.links = append(t.links, l)
	if l, err = link.Tracepoint("syscalls", "sys_exit_connect", t.objs.OnConnectExit, nil); err != nil {
		return nil, missing("attach tracepoint syscalls/sys_exit_connect", err, featSyscallTracepoints)
	}
	t.links = append(t.links, l)
	for _, p := range []*ebpf.Program{t.objs.OnState, t.objs.OnStateNested} {
		if l, err = link.AttachTracing(link.TracingOptions{Program: p}); err != nil {
			return nil, missing("attach tp_btf/inet_sock_set_state", err, featTpBTF)
		}
		t.links = append(t.links, l)
	}

	if t.reader, err = ringbuf.NewReader(t.objs.Events); err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	if err := t.seedOwners(); err != nil {
		return nil, err
	}
	// Loading parsed the kernel's BTF for the CO-RE relocations; it is garbage now: give the
	// memory back rather than carry it for the whole trace.
	debug.FreeOSMemory()
	ok = true
	return t, nil
}

// seedOwners runs the task_file iterator once, after the state program is attached, so that
// sockets opened before sockscope started are attributed to their processes too.
func (t *Tracer) seedOwners() error {
	it, err := link.AttachIter(link.IterOptions{Program: t.objs.SeedOwners})
	if err != nil {
		return missing("attach iter/task_file", err, featIterTaskFile)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return fmt.Errorf("run iter/task_file: %w", err)
	}
	defer rd.Close()
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return fmt.Errorf("run iter/task_file: %w", err)
	}
	return nil
}

// SetNetns replaces the set of traced network namespaces (used only with FilterNetns).
func (t *Tracer) SetNetns(inodes []uint32) error {
	added, err := t.netns.set(t.objs.NetnsFilter, inodes)
	if err != nil {
		return err
	}
	if added && t.reader != nil {
		// The seeder only looks at traced namespaces: name the owners in the new ones.
		return t.seedOwners()
	}
	return nil
}

// ReadInto blocks until the next ring-buffer record and stores it in rec, reusing its buffer.
// It returns ringbuf.ErrFlushed after Flush once everything before the flush has been read,
// and os.ErrClosed after Close.
func (t *Tracer) ReadInto(rec *ringbuf.Record) error { return t.reader.ReadInto(rec) }

// Flush makes ReadInto return what the ring holds now, then ringbuf.ErrFlushed.
func (t *Tracer) Flush() error { return t.reader.Flush() }

// Detach stops the programs (no new events) and leaves the ring readable.
func (t *Tracer) Detach() {
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
}

// Lost counts events the kernel produced but sockscope could not report.
type Lost struct {
	RingFull uint64 // the ring buffer had no room
	// Nested counts program runs the kernel skipped because another BPF program was already
	// running on that CPU (e.g. softirq TCP work interrupting process context).
	Nested uint64
}

// Total is all lost events.
func (l Lost) Total() uint64 { return l.RingFull + l.Nested }

// Lost returns what was lost since the programs were loaded.
func (t *Tracer) Lost() (Lost, error) {
	var l Lost
	per := make([]uint64, runtime.NumCPU())
	if err := t.objs.Lost.Lookup(uint32(0), &per); err != nil {
		return l, fmt.Errorf("read lost-event counter: %w", err)
	}
	for _, v := range per {
		l.RingFull += v
	}
	// on_state's misses minus what its twin took over; the twin's own misses happen only
	// where on_state handled the event or missed it too, so they are not counted again.
	var misses uint64
	for _, p := range []*ebpf.Program{t.objs.OnState, t.objs.OnConnectEnter, t.objs.OnConnectExit} {
		st, err := p.Stats()
		if err != nil {
			return l, fmt.Errorf("read program statistics: %w", err)
		}
		misses += st.RecursionMisses
	}
	if err := t.objs.Nesting.Lookup(uint32(1), &per); err != nil {
		return l, fmt.Errorf("read nesting counter: %w", err)
	}
	var rescued uint64
	for _, v := range per {
		rescued += v
	}
	if misses > rescued {
		l.Nested = misses - rescued
	}
	return l, nil
}

// Close detaches the programs and frees the maps and the ring buffer.
func (t *Tracer) Close() error {
	t.Detach()
	if t.reader != nil {
		t.reader.Close()
	}
	return t.objs.Close()
}

// SetDeadline makes a blocked ReadInto return os.ErrDeadlineExceeded at t once the ring is
// empty; the zero time removes the deadline.
func (t *Tracer) SetDeadline(d time.Time) { t.reader.SetDeadline(d) }
