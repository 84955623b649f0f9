package stacks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/stacks/cfi"
)

// ErrArchUnsupported is returned for samples of an architecture the unwinder does not run.
var ErrArchUnsupported = errors.New("architecture not supported")

// Options configures an Unwinder.
type Options struct {
	// ProcRoot is where the sampled processes' /proc is: "/proc" by default, or the host's
	// /proc mounted elsewhere (--host-root) when sockscope runs in a container.
	ProcRoot string
	// MaxFrames bounds a stack's depth (default 127, perf's default).
	MaxFrames int
	// HostRoot is where separate debug files are looked for besides the process's own root
	// (default "/"; "" disables).
	HostRoot string
}

// Unwinder resolves samples into stacks. It caches per process (mappings, perf map) and per object
// (build ID, or device, inode, size and modification time when there is none). It is safe for
// concurrent use; calls are serialized.
type Unwinder struct {
	mu        sync.Mutex
	opts      Options
	procs     map[uint32]*process
	byFile    map[fileKey]*object
	byBuildID map[string]*object
	debugObjs map[string]*object // separate debug files by build ID (nil value: none found)
	vdso      map[string]*object

	noCFI bool // tests: unwind with frame pointers only, to show what they miss
}

type fileKey struct {
	dev, ino, size uint64
	mtime          int64
}

// New returns an Unwinder.
func New(opts Options) *Unwinder {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.MaxFrames <= 0 {
		opts.MaxFrames = 127
	}
	if opts.HostRoot == "" {
		opts.HostRoot = "/"
	}
	return &Unwinder{
		opts:      opts,
		procs:     map[uint32]*process{},
		byFile:    map[fileKey]*object{},
		byBuildID: map[string]*object{},
		debugObjs: map[string]*object{},
		vdso:      map[string]*object{},
	}
}

// Close releases the objects' open files.
func (u *Unwinder) Close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, o := range u.byFile {
		o.close()
	}
	for _, o := range u.byBuildID {
		o.close()
	}
	for _, o := range u.debugObjs {
		if o != nil {
			o.close()
		}
	}
	u.byFile, u.byBuildID, u.debugObjs = map[fileKey]*object{}, map[string]*object{}, map[string]*object{}
}

// ForgetProcess drops what is cached about pid (call it when the process exits; the objects stay
// cached for other processes).
func (u *Unwinder) ForgetProcess(pid uint32) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.procs, pid)
}

// Frame is one frame of a stack.
type Frame struct {
	// Addr is the frame's address: the sampled PC for the innermost frame, the return address
	// (the instruction after the call) for the others.
	Addr uint64 `json:"address"`
	// Module is the mapped file as the process sees it ("/usr/lib/x86_64-linux-gnu/libc.so.6"),
	// "[vdso]", or "" for anonymous memory (JIT code).
	Module string `json:"module,omitempty"`
	// BuildID is the module's GNU build ID in hex, when it has one.
	BuildID string `json:"build_id,omitempty"`
	// Offset is Addr as a virtual address of the module, what addr2line and objdump take; for
	// anonymous memory, the offset in the mapping.
	Offset uint64 `json:"offset"`
	// Symbol is the function's name, demangled; "" when nothing names it.
	Symbol string `json:"symbol,omitempty"`
	// SymbolOffset is the distance from the function's start.
	SymbolOffset uint64 `json:"symbol_offset,omitempty"`
	// Source says where Symbol came from: "symtab", "dynsym", "debug-symtab" (a separate debug
	// file), or "perfmap" (a JIT runtime's /tmp/perf-PID.map).
	Source string `json:"source,omitempty"`
	// Via says how this frame was found from the one inside it: "regs" (the sampled PC),
	// "cfi", or "fp" (the frame-pointer chain).
	Via string `json:"via"`

	mapping *Mapping
	obj     *object
	call    bool // Addr is a return address: look up Addr-1, inside the call
}

// Name is the frame's name for output: the symbol, else module+0xoffset, else "[unknown]".
func (f *Frame) Name() string {
	if f.Symbol != "" {
		return f.Symbol
	}
	if f.Module != "" {
		return filepath.Base(f.Module) + "+0x" + strconv.FormatUint(f.Offset, 16)
	}
	return "[unknown]"
}

// Stack is an unwound and (after Symbolize) named stack, innermost frame first.
type Stack struct {
	PID    uint32  `json:"pid"`
	TID    uint32  `json:"tid"`
	Frames []Frame `json:"stack"`
	// Truncated is set when the stack was not followed to its outermost frame (a thread's
	// start routine or _start); Reason says why. Frames are never made up to fill the rest.
	Truncated bool   `json:"truncated,omitempty"`
	Reason    string `json:"truncated_reason,omitempty"`
}

// Resolve unwinds and symbolizes a sample.
func (u *Unwinder) Resolve(s *Sample) (*Stack, error) {
	st, err := u.Unwind(s)
	if err != nil {
		return nil, err
	}
	u.Symbolize(st)
	return st, nil
}

// process returns the cached state of pid, loading it on first sight or when the sample's start
// time says the PID now belongs to another process.
func (u *Unwinder) process(pid uint32, startTime uint64) (*process, error) {
	p := u.procs[pid]
	wantTick := startTime / (1e9 / clockTicks)
	if p != nil && (startTime == 0 || p.startTick == wantTick) {
		return p, nil
	}
	np, err := loadProcess(u.opts.ProcRoot, pid)
	if err != nil {
		if p != nil && startTime == 0 {
			return p, nil
		}
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	if startTime != 0 && np.startTick != wantTick {
		return nil, fmt.Errorf("process %d: exited before its stack was resolved (PID now reused)", pid)
	}
	u.procs[pid] = np
	return np, nil
}

// Unwind follows the sample's stack from its registers. It returns an error only when nothing at
// all can be done (unknown architecture, the process gone and never seen); otherwise the stack
// holds every frame that could be found, truncated with a reason where it stops early.
func (u *Unwinder) Unwind(s *Sample) (*Stack, error) {
	if s.Arch != AMD64 {
		return nil, fmt.Errorf("%w: %s (x86_64 only so far)", ErrArchUnsupported, s.Arch)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	st := &Stack{PID: s.PID, TID: s.TID}
	p, err := u.process(s.PID, s.StartTime)
	if err != nil {
		return nil, err
	}
	w := walker{u: u, p: p, s: s, st: st}
	w.run()
	return st, nil
}

// walker is the state of one unwind.
type walker struct {
	u         *Unwinder
	p         *process
	s         *Sample
	st        *Stack
	regs      Regs
	valid     uint64 // bit i: regs[i] is known
	refreshed bool
}

func (w *walker) truncate(format string, args ...any) {
	w.st.Truncated = true
	w.st.Reason = fmt.Sprintf(format, args...)
}

// mapping finds addr's mapping, reading the process's maps again once per unwind when it is not
// found (a library loaded since they were read).
func (w *walker) mapping(addr uint64) *Mapping {
	m := w.p.find(addr)
	if (m == nil || !m.executable) && !w.refreshed && !w.p.gone && time.Since(w.p.mapsAt) > 10*time.Millisecond {
		w.refreshed = true
		if err := w.p.readMaps(); err != nil {
			// The process exited: keep unwinding with what was read before.
			w.p.gone = true
		}
		m = w.p.find(addr)
	}
	if m == nil || !m.executable {
		return nil
	}
	return m
}

// Reg and Mem let CFI expressions read the frame's registers and the copied stack.
func (w *walker) Reg(n uint64) (uint64, error) {
	if n < NumRegs && w.valid&(1<<n) != 0 {
		return w.regs[n], nil
	}
	return 0, fmt.Errorf("register %d is not known in this frame", n)
}

// errStackEnd is the error of a read beyond the copied stack.
type errStackEnd struct {
	addr uint64
	n    int
}

func (e errStackEnd) Error() string {
	return fmt.Sprintf("memory at 0x%x is outside the %d bytes of stack copied", e.addr, e.n)
}

func (w *walker) Mem(addr uint64, size int) (uint64, error) {
	sp := w.s.SP()
	n := uint64(len(w.s.Stack))
	if addr < sp || addr-sp > n || n-(addr-sp) < uint64(size) {
		return 0, errStackEnd{addr, len(w.s.Stack)}
	}
	b := w.s.Stack[addr-sp:]
	switch size {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.LittleEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.LittleEndian.Uint32(b)), nil
	case 8:
		return binary.LittleEndian.Uint64(b), nil
	}
	return 0, fmt.Errorf("read of %d bytes", size)
}

func (w *walker) run() {
	w.regs = w.s.Regs
	w.valid = 1<<(AMD64RIP+1) - 1 // rax..r15 and rip
	via := "regs"
	call := false
	for {
		pc := w.regs[AMD64RIP]
		if len(w.st.Frames) >= w.u.opts.MaxFrames {
			w.truncate("more than %d frames", w.u.opts.MaxFrames)
			return
		}
		m := w.mapping(pc)
		if m == nil {
			if len(w.st.Frames) == 0 {
				// The sampled PC is real even when nothing maps it any more: show it.
				w.st.Frames = append(w.st.Frames, Frame{Addr: pc, Offset: pc, Via: via})
			}
			w.truncate("address 0x%x maps to no executable mapping", pc)
			return
		}
		f := Frame{Addr: pc, Module: m.Path, Via: via, mapping: m, call: call}
		obj, _ := w.u.objectFor(w.p, m)
		lookup := pc
		if call {
			lookup = pc - 1
		}
		var row *cfi.Row
		var rowErr error
		if obj != nil {
			f.obj, f.BuildID = obj, obj.buildID
			f.Offset, _ = obj.vaddr(m, pc)
			if va, ok := obj.vaddr(m, lookup); ok && !w.u.noCFI {
				row, rowErr = obj.row(va)
			} else {
				rowErr = cfi.ErrNoFDE
			}
		} else {
			f.Offset = pc - m.Start + m.Offset
			rowErr = cfi.ErrNoFDE
		}
		w.st.Frames = append(w.st.Frames, f)
		sp := w.regs[AMD64RSP]
		var done bool
		var err error
		signal := false
		switch {
		case row != nil:
			done, err = w.stepCFI(row)
			via, signal = "cfi", row.SignalFrame
		case errors.Is(rowErr, cfi.ErrNoFDE):
			// No CFI: JIT code (V8 keeps rbp as a frame pointer in its frames), or assembly.
			done, err = w.stepFP()
			via = "fp"
		default:
			w.truncate("call frame information of %s at 0x%x: %v", m.Path, pc, rowErr)
			return
		}
		if err != nil {
			w.truncate("%v", err)
			return
		}
		if done {
			return
		}
		if w.regs[AMD64RIP] == 0 {
			// A zero return address ends the chain (clone()'s child and the frame-pointer ABI
			// end stacks so).
			return
		}
		// The stack grows down: a caller's frame is above its callee's. A step that does not
		// move up is a loop, except into a signal handler's interrupted context (which may
		// be on another stack, sigaltstack).
		if w.regs[AMD64RSP] <= sp && !signal {
			w.truncate("stack pointer did not move up at 0x%x (0x%x -> 0x%x)", pc, sp, w.regs[AMD64RSP])
			return
		}
		call = !signal
	}
}

// stepCFI computes the caller's registers from a CFI row. done reports the outermost frame.
func (w *walker) stepCFI(row *cfi.Row) (done bool, err error) {
	var cfa uint64
	switch row.CFA.Kind {
	case cfi.CFARegOffset:
		base, err := w.Reg(row.CFA.Reg)
		if err != nil {
			return false, fmt.Errorf("CFA: %w", err)
		}
		cfa = base + uint64(row.CFA.Offset)
	case cfi.CFAExpression:
		if cfa, err = cfi.Eval(row.CFA.Expr, w, 8, binary.LittleEndian); err != nil {
			return false, fmt.Errorf("CFA expression: %w", err)
		}
	default:
		return false, fmt.Errorf("no CFA rule at 0x%x", w.regs[AMD64RIP])
	}
	var next Regs
	var valid uint64
	for r := uint64(0); r <= AMD64RIP; r++ {
		rule := row.Rule(r)
		var v uint64
		ok := true
		switch rule.Kind {
		case cfi.Unspecified, cfi.SameValue:
			if r == AMD64RSP {
				v = cfa // the CFA is, by definition, the caller's stack pointer
			} else {
				v, ok = w.regs[r], w.valid&(1<<r) != 0
			}
		case cfi.Undefined:
			if r == row.RAReg {
				return true, nil // the outermost frame: glibc's _start, thread start routines
			}
			ok = false
		case cfi.Offset:
			if v, err = w.Mem(cfa+uint64(rule.Offset), 8); err != nil {
				if r == row.RAReg {
					return false, fmt.Errorf("return address: %w", err)
				}
				ok = false
			}
		case cfi.ValOffset:
			v = cfa + uint64(rule.Offset)
		case cfi.Register:
			v, err = w.Reg(rule.Reg)
			ok = err == nil
		case cfi.Expression, cfi.ValExpression:
			if v, err = cfi.Eval(rule.Expr, w, 8, binary.LittleEndian, cfa); err == nil && rule.Kind == cfi.Expression {
				v, err = w.Mem(v, 8)
			}
			if err != nil {
				if r == row.RAReg || errors.Is(err, cfi.ErrUnsupported) {
					return false, fmt.Errorf("register %d: %w", r, err)
				}
				ok = false
			}
		default:
			return false, fmt.Errorf("register %d: rule %s", r, rule.Kind)
		}
		if ok {
			next[r] = v
			valid |= 1 << r
		}
	}
	if row.RAReg != AMD64RIP {
		return false, fmt.Errorf("return address column %d (x86_64 uses 16)", row.RAReg)
	}
	if valid&(1<<AMD64RIP) == 0 {
		return false, errors.New("return address not recovered")
	}
	w.regs, w.valid = next, valid
	return false, nil
}

// stepFP follows the frame-pointer chain one frame: the saved rbp at [rbp], the return address
// at [rbp+8], the caller's rsp at rbp+16. Only rbp, rsp and rip are known afterwards: the code
// without CFI may have changed the others without saying where it saved them.
func (w *walker) stepFP() (done bool, err error) {
	if w.valid&(1<<AMD64RBP) == 0 {
		return false, errors.New("no call frame information and no known frame pointer")
	}
	fp := w.regs[AMD64RBP]
	if fp == 0 {
		return true, nil // the frame-pointer ABI's outermost frame
	}
	sp := w.regs[AMD64RSP]
	if fp < sp || fp%8 != 0 {
		return false, fmt.Errorf("frame pointer 0x%x is not a frame on the stack (sp 0x%x)", fp, sp)
	}
	savedFP, err := w.Mem(fp, 8)
	if err != nil {
		return false, fmt.Errorf("frame pointer chain: %w", err)
	}
	ra, err := w.Mem(fp+8, 8)
	if err != nil {
		return false, fmt.Errorf("frame pointer chain: %w", err)
	}
	var next Regs
	next[AMD64RBP], next[AMD64RSP], next[AMD64RIP] = savedFP, fp+16, ra
	w.regs, w.valid = next, 1<<AMD64RBP|1<<AMD64RSP|1<<AMD64RIP
	return false, nil
}

// objectFor returns the object mapped by m, loading it on first use.
func (u *Unwinder) objectFor(p *process, m *Mapping) (*object, error) {
	if !m.done {
		m.obj, m.objErr = u.loadObject(p, m)
		m.done = true
	}
	return m.obj, m.objErr
}

var errAnonymous = errors.New("anonymous memory")

// loadObject opens the file behind m. It is read through the process's root (/proc/PID/root/
// PATH), which is the container's filesystem for a containerized process, when the file there is
// the one mapped (same inode); else through /proc/PID/map_files/START-END, which opens the mapped
// file itself even when it was deleted or replaced.
func (u *Unwinder) loadObject(p *process, m *Mapping) (*object, error) {
	if m.Path == "[vdso]" {
		return u.loadVDSO(p, m)
	}
	if !m.File() {
		return nil, errAnonymous
	}
	var candidates []string
	if !m.Deleted {
		candidates = append(candidates, filepath.Join(p.root(), m.Path))
	}
	candidates = append(candidates, filepath.Join(p.dir, "map_files", fmt.Sprintf("%x-%x", m.Start, m.End)))
	var lastErr error
	for _, path := range candidates {
		f, err := os.Open(path)
		if err != nil {
			lastErr = err
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			lastErr = err
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			f.Close()
			lastErr = fmt.Errorf("%s: no inode", path)
			continue
		}
		if st.Ino != m.Inode {
			// Replaced since it was mapped (a package upgrade): not the code that ran.
			f.Close()
			lastErr = fmt.Errorf("%s is not the mapped file (inode %d, mapped %d)", path, st.Ino, m.Inode)
			continue
		}
		key := fileKey{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim.Nano()}
		if o, ok := u.byFile[key]; ok {
			f.Close()
			return o, nil
		}
		o, err := openObject(f, f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", m.Path, err)
		}
		o.origin = path
		if o.buildID != "" {
			if shared, ok := u.byBuildID[o.buildID]; ok {
				o.close()
				u.byFile[key] = shared
				return shared, nil
			}
			u.byBuildID[o.buildID] = o
		}
		u.byFile[key] = o
		return o, nil
	}
	return nil, lastErr
}

// loadVDSO reads the vDSO image out of the process's memory: it is not a file, but an ELF
// object with CFI and symbols like any library, the same for every process of a boot.
func (u *Unwinder) loadVDSO(p *process, m *Mapping) (*object, error) {
	size := m.End - m.Start
	if size > 1<<20 {
		return nil, fmt.Errorf("[vdso] of %d bytes", size)
	}
	f, err := os.Open(filepath.Join(p.dir, "mem"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img := make([]byte, size)
	if _, err := f.ReadAt(img, int64(m.Start)); err != nil {
		return nil, fmt.Errorf("[vdso]: %w", err)
	}
	o, err := openObject(bytesReaderAt(img), nil)
	if err != nil {
		return nil, fmt.Errorf("[vdso]: %w", err)
	}
	if shared, ok := u.vdso[o.buildID]; ok {
		return shared, nil
	}
	u.vdso[o.buildID] = o
	return o, nil
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(b)) {
		return 0, errors.New("read outside the image")
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, errors.New("read past the end of the image")
	}
	return n, nil
}
