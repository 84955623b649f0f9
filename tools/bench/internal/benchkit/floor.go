package benchkit

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sockscope/sockscope/loader"
)

// The hooks sockscope's modes attach to, for floor variants: the same hooks with programs that
// do nothing, so that a mode's cost can be read against the cost of merely being attached,
// measured in the same run.
const (
	HookState        = "tp_btf/inet_sock_set_state"
	HookConnectEnter = "tracepoint/syscalls/sys_enter_connect"
	HookSysEnter     = "tp_btf/sys_enter"
	HookSysExit      = "tp_btf/sys_exit"
	// HookStateWriter is inet_sock_set_state with the least a tracer that writes every
	// transition does: one clock read and one 16-byte ring-buffer record (the time and the
	// socket), drained by a reader every 10 ms. No filter, no field read.
	HookStateWriter = "writer/inet_sock_set_state"
)

// Floor is a set of floor programs, attached. Close detaches them.
type Floor struct {
	links   []link.Link
	progs   []*ebpf.Program
	ring    *ebpf.Map
	maps    []*ebpf.Map
	counts  *ebpf.Map // a counting floor's per-CPU counters
	stop    chan struct{}
	done    sync.WaitGroup
	Records uint64 // what the writer's reader took, valid after Close
	Counts  uint64 // what a counting floor counted, valid after Close
}

// AttachFloor loads and attaches one floor program per hook (a hook may be given twice).
func AttachFloor(hooks ...string) (_ *Floor, err error) {
	f := &Floor{stop: make(chan struct{})}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	for _, h := range hooks {
		kind, target, ok := strings.Cut(h, "/")
		if !ok {
			return nil, fmt.Errorf("floor hook %q: want KIND/TARGET", h)
		}
		var l link.Link
		switch kind {
		case "tp_btf":
			p, err := loadFloor(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: target, Instructions: empty()})
			if err != nil {
				return nil, fmt.Errorf("floor %s: %w", h, err)
			}
			f.progs = append(f.progs, p)
			l, err = link.AttachTracing(link.TracingOptions{Program: p})
			if err != nil {
				return nil, fmt.Errorf("floor %s: %w", h, err)
			}
		case "tracepoint":
			if err := mountTracefs(); err != nil {
				return nil, err
			}
			group, name, _ := strings.Cut(target, "/")
			p, err := loadFloor(&ebpf.ProgramSpec{Type: ebpf.TracePoint, Instructions: empty()})
			if err != nil {
				return nil, fmt.Errorf("floor %s: %w", h, err)
			}
			f.progs = append(f.progs, p)
			if l, err = link.Tracepoint(group, name, p, nil); err != nil {
				return nil, fmt.Errorf("floor %s: %w", h, err)
			}
		case "counter", "nsfilter":
			if l, err = f.nsCounter(kind, target); err != nil {
				return nil, fmt.Errorf("floor %s: %w", h, err)
			}
		case "writer":
			if l, err = f.writer(target); err != nil {
				return nil, fmt.Errorf("floor %s: %w", h, err)
			}
		default:
			return nil, fmt.Errorf("floor hook %q: unknown kind %q", h, kind)
		}
		f.links = append(f.links, l)
	}
	return f, nil
}

func empty() asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
}

func loadFloor(spec *ebpf.ProgramSpec) (*ebpf.Program, error) {
	spec.License = "GPL"
	return ebpf.NewProgram(spec)
}

// writer attaches the writer floor to a BTF tracepoint whose first argument is a pointer.
func (f *Floor) writer(target string) (link.Link, error) {
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4 << 20})
	if err != nil {
		return nil, err
	}
	f.ring = ring
	insns := asm.Instructions{
		asm.LoadMem(asm.R6, asm.R1, 0, asm.DWord), // the tracepoint's first argument (sk)
		asm.FnKtimeGetNs.Call(),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.LoadMapPtr(asm.R1, ring.FD()),
		asm.Mov.Imm(asm.R2, 16),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.StoreMem(asm.R0, 0, asm.R7, asm.DWord),
		asm.StoreMem(asm.R0, 8, asm.R6, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R2, 1), // BPF_RB_NO_WAKEUP
		asm.FnRingbufSubmit.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
	p, err := loadFloor(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: target, Instructions: insns})
	if err != nil {
		return nil, err
	}
	f.progs = append(f.progs, p)
	rd, err := loader.NewRing(ring)
	if err != nil {
		return nil, err
	}
	f.done.Add(1)
	go func() {
		defer f.done.Done()
		defer rd.Close()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				f.Records += uint64(rd.Drain(func([]byte) {}))
				return
			case <-t.C:
				f.Records += uint64(rd.Drain(func([]byte) {}))
			}
		}
	}()
	return link.AttachTracing(link.TracingOptions{Program: p})
}

// Close detaches and frees everything.
func (f *Floor) Close() {
	for _, l := range f.links {
		l.Close()
	}
	if f.counts != nil {
		f.Counts, _ = f.Counted()
	}
	close(f.stop)
	f.done.Wait()
	for _, p := range f.progs {
		p.Close()
	}
	if f.ring != nil {
		f.ring.Close()
	}
	for _, m := range f.maps {
		m.Close()
	}
}

// mountTracefs mounts tracefs where it is not (classic tracepoints are found by id there). It is
// left mounted: other tools on the machine may start relying on it.
func mountTracefs() error {
	if _, err := os.Stat("/sys/kernel/tracing/events"); err == nil {
		return nil
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("mount tracefs on /sys/kernel/tracing: %w", err)
	}
	Logf("mounted tracefs on /sys/kernel/tracing (left mounted)")
	return nil
}
