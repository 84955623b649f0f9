// Package loader is what every kernel capability of sockscope shares: the feature probes and
// the one-line errors that say what a kernel lacks, privileges, BTF, tracefs, the typed load step
// (AssignSpecs, SetConstants, NetnsSpecs, CommSpecs), the namespace filter's table, reading inside
// a network namespace, the ring buffer reader and the lost counts. Each capability has a package
// below it (loader/trace, loader/sockets, loader/syscalls, loader/counters, loader/stacks) holding
// its bpf2go output and its typed loader.
package loader

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
)

// Feature is one kernel capability sockscope relies on, and whether this kernel has it.
type Feature struct {
	Name string
	// Err is nil when the kernel has the feature. Otherwise it says why the probe failed, the
	// first Linux version that has it, and what sockscope cannot do here: one line.
	Err error
}

// Need names a probe; each program set lists those it needs (see Missing).
type Need int

const (
	NeedBTF Need = iota
	NeedRingBuf
	NeedTpBTF
	NeedTaskStorage
	NeedIterTCP
	NeedIterTaskFile
	NeedSyscallTracepoints
	NeedEveryReset
	NeedMapWalk
)

// featureDef is a probe, what it finds (a name of at most 29 characters, for sockscope version's
// column), since when Linux has it, and what sockscope loses
// without it. The probes load tiny programs of the kinds sockscope's own are, so they fail the
// way sockscope would, not by a version number (distributions backport, and configure out).
type featureDef struct {
	name  string
	since string
	lost  string
	probe func() error
}

var featureDefs = map[Need]featureDef{
	NeedBTF: {"BTF (/sys/kernel/btf/vmlinux)", "5.4 with CONFIG_DEBUG_INFO_BTF=y",
		"nothing runs: every program is CO-RE, fitted to this kernel by its BTF",
		func() error { _, err := btfCache().Kernel(); return err }},
	NeedRingBuf: {"ring buffer", "5.8",
		"trace and record cannot run: their events come through it",
		func() error { return features.HaveMapType(ebpf.RingBuf) }},
	NeedTpBTF: {"tp_btf (BTF tracepoints)", "5.5",
		"trace, syscalls, export and record cannot run: their hooks are BTF tracepoints",
		func() error { return probeTracing(ebpf.AttachTraceRawTp, "inet_sock_set_state") }},
	NeedTaskStorage: {"task storage", "5.11",
		"trace, syscalls and record cannot run: they keep each thread's connect() or syscall in progress in task storage",
		func() error { return features.HaveMapType(ebpf.TaskStorage) }},
	NeedIterTCP: {"socket iterators (iter/tcp)", "5.9",
		"sockets, export and record cannot run: they read the socket tables with it",
		func() error { return probeTracing(ebpf.AttachTraceIter, "tcp") }},
	NeedIterTaskFile: {"owner walk (iter/task_file)", "5.11",
		"sockets, export, trace and record cannot run: they find sockets' owners, and those of sockets opened before they started, with it",
		probeSockFromFile},
	NeedSyscallTracepoints: {"syscall tracepoints", "any, with CONFIG_FTRACE_SYSCALLS=y",
		"trace and record --connect-syscall cannot run: they take connect() failures at the syscall's return",
		probeSyscallTracepoints},
	NeedMapWalk: {"map walks (bpf_for_each_map_elem)", "5.13",
		"export cannot run: its socket gauges read the request sockets of the listeners it counts with a program that walks their table",
		func() error { return features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnForEachMapElem) }},
	NeedEveryReset: {"tcp_send_reset, every reset", "6.10",
		"export's sockscope_tcp_resets_sent_total counts only resets sent by established sockets, not those answering connects to closed ports or segments of connections already closed",
		probeEveryReset},
}

// featureOrder is how sockscope version lists them.
var featureOrder = []Need{NeedBTF, NeedRingBuf, NeedTpBTF, NeedTaskStorage, NeedMapWalk, NeedIterTCP, NeedIterTaskFile, NeedSyscallTracepoints, NeedEveryReset}

// probed runs each probe once per process: a failed load says which were missing.
var probed = sync.OnceValue(func() map[Need]error {
	Memlock() // where the kernel is older than 5.11, the probes' maps count against it too
	m := map[Need]error{}
	for _, id := range featureOrder {
		if err := featureDefs[id].probe(); err != nil {
			m[id] = missingError(id, err)
		}
	}
	return m
})

func missingError(id Need, err error) error {
	d := featureDefs[id]
	return fmt.Errorf("%v; Linux %s has it; without it %s", oneLine(err), d.since, d.lost)
}

// Features probes the kernel for what sockscope's programs use.
func Features() []Feature {
	m := probed()
	fs := make([]Feature, 0, len(featureOrder))
	for _, id := range featureOrder {
		fs = append(fs, Feature{Name: featureDefs[id].name, Err: m[id]})
	}
	return fs
}

// Missing turns a failure to load or attach a program set into the one line that names the
// kernel features it lacks, when the probes find any of those it needs; otherwise err itself,
// on one line.
func Missing(what string, err error, needs ...Need) error {
	if lerr := Lacking(what, needs...); lerr != nil {
		return lerr
	}
	return fmt.Errorf("%s: %s", what, oneLine(err))
}

// Lacking names, in one line, what of needs this kernel lacks; nil when it has them all.
func Lacking(what string, needs ...Need) error {
	m := probed()
	var lacks []string
	for _, id := range needs {
		if perr, ok := m[id]; ok {
			lacks = append(lacks, featureDefs[id].name+" ("+perr.Error()+")")
		}
	}
	if len(lacks) > 0 {
		return fmt.Errorf("%s: this kernel lacks %s", what, strings.Join(lacks, "; and "))
	}
	return nil
}

// oneLine keeps the first line of a multi-line error (a verifier log), which says what failed.
func oneLine(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return ve.Error() // the cause and the log's last line, without the log
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// probeTracing loads a do-nothing tracing program of one attach type. The generic probe in
// cilium/ebpf loads an fentry program, which kernels without fentry refuse even where tp_btf
// and iterators work, so each attach type is probed on its own.
func probeTracing(at ebpf.AttachType, target string) error {
	return loadProbe(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: at,
		AttachTo:   target,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
}

// loadProbe loads one program alone, as a collection of one, so that it shares the parsed kernel
// BTF with the other probes and the programs loaded after them.
func loadProbe(spec *ebpf.ProgramSpec) error {
	c, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{"probe": spec}}, *LoadOptions())
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			return inner // what the kernel said, without the collection's "program probe: "
		}
		return err
	}
	c.Close()
	return nil
}

// probeSockFromFile calls bpf_sock_from_file from an iter/task_file program, as the owner walks
// do (struct bpf_iter__task_file: meta, task, fd, file at offset 24).
func probeSockFromFile() error {
	return loadProbe(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceIter,
		AttachTo:   "task_file",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R1, asm.R1, 24, asm.DWord),
			asm.JEq.Imm(asm.R1, 0, "out"),
			asm.FnSockFromFile.Call(),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	})
}

// probeSyscallTracepoints looks for the connect() syscall tracepoints in tracefs (mounting it
// where it is not, as trace does).
func probeSyscallTracepoints() error {
	if err := MountTracefs(); err != nil {
		return err
	}
	for _, dir := range []string{tracefsDir, "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events/syscalls/sys_enter_connect/id"); err == nil {
			return nil
		}
	}
	return errors.New("no syscalls:sys_enter_connect in tracefs")
}

// probeEveryReset: until 6.10, tcp_send_reset fired only for resets that full sockets sent. The
// same release gave it a third argument, the reason, which is how this kernel's BTF tells.
func probeEveryReset() error {
	n, err := TracepointArgs("tcp_send_reset")
	if err != nil {
		return err
	}
	if n < 3 {
		return fmt.Errorf("tcp_send_reset has %d arguments, so it fires only for resets from full sockets", n)
	}
	return nil
}

// Name is what the probe finds, as sockscope version lists it.
func (n Need) Name() string { return featureDefs[n].name }

// Has says whether this kernel has what n names: nil, or one line on what it lacks. Each probe
// runs once per process.
func Has(n Need) error { return probed()[n] }

// Memlock lifts RLIMIT_MEMLOCK where the kernel charges BPF maps to it (before 5.11, whose
// cgroup accounting made that a no-op here); without it the first map fails with EPERM.
var Memlock = sync.OnceValue(func() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("this kernel (before 5.11) charges BPF maps to RLIMIT_MEMLOCK, and raising it failed (%v): run sockscope as root or give it CAP_SYS_RESOURCE", err)
	}
	return nil
})

// WriteFeatures lists features one per line, as `sockscope version` shows them: each name, then
// "yes" or "no" with what is missing.
func WriteFeatures(w io.Writer, features []Feature) {
	width := 0
	for _, f := range features {
		width = max(width, len(f.Name))
	}
	for _, f := range features {
		if f.Err == nil {
			fmt.Fprintf(w, "  %-*s  yes\n", width, f.Name)
		} else {
			fmt.Fprintf(w, "  %-*s  no (%v)\n", width, f.Name, f.Err)
		}
	}
}
