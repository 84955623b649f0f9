package stacks

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ianlancetaylor/demangle"
)

// Symbolize names the frames of a stack from Unwind: from a perf map where the process has one
// (JIT code), else from the module's .symtab, a separate debug file's .symtab, or .dynsym.
// Frames that nothing names keep an empty Symbol, and Name() shows them as module+0xoff or
// [unknown].
func (u *Unwinder) Symbolize(st *Stack) {
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.procs[st.PID]
	perfChecked := false
	for i := range st.Frames {
		f := &st.Frames[i]
		if f.Symbol != "" {
			continue
		}
		addr := f.Addr
		if f.call {
			addr-- // inside the call instruction, not after it: the call may end its function
		}
		// JIT runtimes name their code in a perf map. Besides anonymous memory that may cover
		// code in a file: V8's builtins are in node's .text, named only by the map.
		if p != nil {
			if !perfChecked {
				u.refreshPerfMap(p, false)
				perfChecked = true
			}
			if p.perf != nil {
				name, start, ok := p.perf.lookup(addr)
				if !ok && f.obj == nil && u.refreshPerfMap(p, true) {
					name, start, ok = p.perf.lookup(addr)
				}
				if ok {
					f.Symbol, f.SymbolOffset, f.Source = name, f.Addr-start, "perfmap"
					continue
				}
			}
		}
		if f.obj == nil || f.mapping == nil {
			continue
		}
		va, ok := f.obj.vaddr(f.mapping, addr)
		if !ok {
			continue
		}
		u.nameFrom(f, va, p)
	}
}

// nameFrom names f at virtual address va from its object's symbols or its debug file's.
func (u *Unwinder) nameFrom(f *Frame, va uint64, p *process) {
	o := f.obj
	o.loadSymbols()
	syms, source := o.syms, o.symSource
	if source != "symtab" && o.buildID != "" {
		// A stripped object: its debug file, when installed, has the full symbol table.
		d, seen := u.debugObjs[o.buildID]
		if !seen {
			var roots []string
			if p != nil {
				roots = append(roots, p.root())
			}
			if u.opts.HostRoot != "" {
				roots = append(roots, strings.TrimSuffix(u.opts.HostRoot, "/"))
			}
			d, _ = openDebugFile(roots, o.buildID)
			if d != nil {
				d.loadSymbols()
				if d.symSource != "symtab" || d.syms == nil {
					d.close()
					d = nil
				}
			}
			u.debugObjs[o.buildID] = d
		}
		if d != nil {
			syms, source = d.syms, "debug-symtab"
		}
	}
	if syms == nil {
		return
	}
	i, ok := syms.lookup(va)
	if !ok && source == "debug-symtab" && o.syms != nil {
		syms, source = o.syms, o.symSource
		i, ok = syms.lookup(va)
	}
	if !ok {
		return
	}
	f.Symbol = syms.name(i)
	f.SymbolOffset = f.Offset - syms.syms[i].addr
	f.Source = source
}

// demangleName turns C++ (Itanium ABI, _Z) and Rust (v0 _R, and legacy _ZN...17h<hash>E)
// symbols into source names; other names are returned as they are.
func demangleName(name string) (out string) {
	if !strings.HasPrefix(name, "_Z") && !strings.HasPrefix(name, "_R") {
		return name
	}
	defer func() {
		// The demangler recovers from its own errors; a panic it missed must not take the
		// caller down for a symbol name.
		if recover() != nil {
			out = name
		}
	}()
	return demangle.Filter(name, demangle.NoClones)
}

// perfMap is a JIT runtime's /tmp/perf-PID.map: "START SIZE name" lines in hex, appended as code
// is generated; a later line for the same addresses replaces an earlier one (code moved or
// freed and reused).
type perfMap struct {
	path    string
	size    int64 // bytes parsed so far (complete lines)
	checked time.Time
	exists  bool        // the file was opened once
	entries []perfEntry // sorted by start
	maxEnd  []uint64    // maxEnd[i] = max(entries[0..i].end), to stop the backward scan
	pending []perfEntry // parsed, not yet merged into entries
}

type perfEntry struct {
	start, end uint64
	seq        int
	name       string
}

// perfMapRecheck is how often a process without a perf map is looked at again for one.
const perfMapRecheck = 200 * time.Millisecond

// refreshPerfMap opens or extends the process's perf map. With missed set it is for an address
// the map did not have: read what was appended since, if the file grew (a stat per miss: code
// compiled a moment ago is named by the line the runtime wrote before running it). It reports
// whether new entries were read.
func (u *Unwinder) refreshPerfMap(p *process, missed bool) bool {
	if p.perf != nil && !missed {
		return false
	}
	if p.perf == nil {
		p.perf = &perfMap{path: filepath.Join(p.root(), "tmp", fmt.Sprintf("perf-%d.map", p.nspid))}
	}
	pm := p.perf
	if pm.exists {
		if fi, err := os.Stat(pm.path); err != nil || fi.Size() <= pm.size {
			return false
		}
		n, _ := pm.readMore()
		return n > 0
	}
	if !pm.checked.IsZero() && time.Since(pm.checked) < perfMapRecheck {
		return false
	}
	pm.checked = time.Now()
	n, err := pm.readMore()
	if err == nil {
		pm.exists = true
	}
	if err != nil && len(pm.entries) == 0 {
		// No map (the runtime does not write one): keep the struct so that the recheck is rate
		// limited, but look nothing up in it.
		return false
	}
	return n > 0
}

// readMore parses the lines appended since the last read.
func (pm *perfMap) readMore() (int, error) {
	f, err := os.Open(pm.path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(pm.size, io.SeekStart); err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(f, 64<<10)
	n := 0
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			break // an incomplete last line is read again next time
		}
		pm.size += int64(len(line))
		if e, ok := parsePerfMapLine(line); ok {
			e.seq = len(pm.entries) + len(pm.pending)
			pm.pending = append(pm.pending, e)
			n++
		}
	}
	pm.merge()
	return n, nil
}

func parsePerfMapLine(line []byte) (perfEntry, bool) {
	line = bytes.TrimRight(line, "\r\n")
	f := bytes.SplitN(line, []byte(" "), 3)
	if len(f) < 3 {
		return perfEntry{}, false
	}
	hex := func(b []byte) (uint64, bool) {
		s := strings.TrimPrefix(strings.TrimPrefix(string(b), "0x"), "0X")
		v, err := strconv.ParseUint(s, 16, 64)
		return v, err == nil
	}
	start, ok1 := hex(f[0])
	size, ok2 := hex(f[1])
	if !ok1 || !ok2 || size == 0 || start+size < start {
		return perfEntry{}, false
	}
	return perfEntry{start: start, end: start + size, name: string(f[2])}, true
}

func (pm *perfMap) merge() {
	if len(pm.pending) == 0 {
		return
	}
	pm.entries = append(pm.entries, pm.pending...)
	pm.pending = nil
	sort.SliceStable(pm.entries, func(i, j int) bool { return pm.entries[i].start < pm.entries[j].start })
	pm.maxEnd = make([]uint64, len(pm.entries))
	var m uint64
	for i, e := range pm.entries {
		m = max(m, e.end)
		pm.maxEnd[i] = m
	}
}

// lookup returns the newest entry containing addr.
func (pm *perfMap) lookup(addr uint64) (string, uint64, bool) {
	i := sort.Search(len(pm.entries), func(i int) bool { return pm.entries[i].start > addr }) - 1
	best := -1
	for j := i; j >= 0 && pm.maxEnd[j] > addr; j-- {
		if e := pm.entries[j]; addr < e.end && (best < 0 || e.seq > pm.entries[best].seq) {
			best = j
		}
	}
	if best < 0 {
		return "", 0, false
	}
	return pm.entries[best].name, pm.entries[best].start, true
}
