package stacks

import (
	"bytes"
	"cmp"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/sockscope/sockscope/stacks/cfi"
)

// maxSection bounds what is read of one section: node's .eh_frame is 2.7 MB, its .symtab 2.6 MB
// and .strtab about 10 MB; a section claiming gigabytes is a broken or hostile file.
const maxSection = 512 << 20

// object is one ELF file (executable, shared library, vDSO) as far as unwinding and naming need
// it. Objects are shared by every process and mapping with the same build ID.
type object struct {
	buildID string
	origin  string // the path it was read from (/proc/PID/root/..., /proc/PID/map_files/...)
	arch    Arch
	loads   []load

	eh  *cfi.Table // .eh_frame, nil when absent
	dbg *cfi.Table // .debug_frame, nil when absent

	// Symbols are read on first use: unwinding alone does not need them.
	file       io.ReaderAt
	closer     io.Closer
	ef         *elf.File
	symsLoaded bool
	syms       *symtab
	symSource  string // "symtab", "dynsym", "debug-symtab"
	symErr     error

	rows map[uint64]*cfi.Row // decoded rows by virtual address (a small cache)
}

type load struct {
	off, filesz, vaddr uint64
	exec               bool
}

// maxRowCache bounds the per-object cache of decoded CFI rows; the cache starts over when full.
const maxRowCache = 4096

// openObject reads an ELF object's headers, build ID and call frame information.
func openObject(r io.ReaderAt, closer io.Closer) (obj *object, err error) {
	// debug/elf trusts section and segment headers more than a hostile file deserves; a panic
	// there must become an error for this one object, not end the program.
	defer func() {
		if v := recover(); v != nil {
			obj, err = nil, fmt.Errorf("malformed ELF object: %v", v)
		}
	}()
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	o := &object{file: r, closer: closer, ef: ef}
	if ef.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("%s objects are not supported (64-bit only)", ef.Class)
	}
	switch ef.Machine {
	case elf.EM_X86_64:
		o.arch = AMD64
	case elf.EM_AARCH64:
		o.arch = ARM64
	default:
		return nil, fmt.Errorf("machine %s not supported", ef.Machine)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			o.loads = append(o.loads, load{off: p.Off, filesz: p.Filesz, vaddr: p.Vaddr, exec: p.Flags&elf.PF_X != 0})
		}
	}
	if len(o.loads) == 0 {
		return nil, errors.New("no loadable segments")
	}
	o.buildID = readBuildID(ef)
	if err := o.readCFI(); err != nil {
		return nil, err
	}
	return o, nil
}

// readBuildID returns the GNU build ID note in hex, from its section or, in objects without
// section headers, from the PT_NOTE segments.
func readBuildID(ef *elf.File) string {
	var notes [][]byte
	if s := ef.Section(".note.gnu.build-id"); s != nil && s.Type == elf.SHT_NOTE {
		if d, err := sectionData(s); err == nil {
			notes = append(notes, d)
		}
	} else {
		for _, p := range ef.Progs {
			if p.Type == elf.PT_NOTE && p.Filesz < 1<<16 {
				d := make([]byte, p.Filesz)
				if _, err := p.ReadAt(d, 0); err == nil {
					notes = append(notes, d)
				}
			}
		}
	}
	for _, d := range notes {
		// Elf64_Nhdr: namesz, descsz, type; name and desc padded to 4 bytes.
		for len(d) >= 12 {
			namesz := uint64(ef.ByteOrder.Uint32(d[0:]))
			descsz := uint64(ef.ByteOrder.Uint32(d[4:]))
			typ := ef.ByteOrder.Uint32(d[8:])
			nameEnd := 12 + (namesz+3)&^3
			descEnd := nameEnd + (descsz+3)&^3
			if nameEnd > uint64(len(d)) || nameEnd+descsz > uint64(len(d)) {
				break
			}
			if typ == 3 && namesz == 4 && string(d[12:15]) == "GNU" && descsz > 0 {
				return hex.EncodeToString(d[nameEnd : nameEnd+descsz])
			}
			if descEnd > uint64(len(d)) {
				break
			}
			d = d[descEnd:]
		}
	}
	return ""
}

func sectionData(s *elf.Section) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf("section %s has no data in this file", s.Name)
	}
	if s.Size > maxSection {
		return nil, fmt.Errorf("section %s: %d bytes", s.Name, s.Size)
	}
	return s.Data()
}

// readCFI prepares the lookups in .eh_frame (through .eh_frame_hdr) and .debug_frame. An object
// whose section headers were stripped still has its PT_GNU_EH_FRAME segment, the header the
// runtime unwinder itself uses.
func (o *object) readCFI() error {
	ef := o.ef
	var errs []error
	if eh := ef.Section(".eh_frame"); eh != nil && eh.Type != elf.SHT_NOBITS {
		data, err := sectionData(eh)
		if err != nil {
			errs = append(errs, err)
		} else {
			var hdr []byte
			var hdrAddr uint64
			if h := ef.Section(".eh_frame_hdr"); h != nil && h.Type != elf.SHT_NOBITS {
				if hdr, err = sectionData(h); err == nil {
					hdrAddr = h.Addr
				} else {
					hdr = nil
				}
			}
			t, err := cfi.NewTable(cfi.Section{Format: cfi.EHFrame, Data: data, Addr: eh.Addr, PtrSize: 8, Order: ef.ByteOrder}, hdr, hdrAddr)
			if err != nil {
				errs = append(errs, fmt.Errorf(".eh_frame: %w", err))
			} else {
				o.eh = t
			}
		}
	} else if len(ef.Sections) == 0 || ef.Section(".eh_frame") == nil {
		if t, err := o.ehFromSegment(); err != nil {
			errs = append(errs, err)
		} else {
			o.eh = t
		}
	}
	if df := ef.Section(".debug_frame"); df != nil && df.Type != elf.SHT_NOBITS {
		data, err := sectionData(df)
		if err == nil {
			o.dbg, err = cfi.NewTable(cfi.Section{Format: cfi.DebugFrame, Data: data, PtrSize: 8, Order: ef.ByteOrder}, nil, 0)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf(".debug_frame: %w", err))
		}
	}
	// Broken CFI is not fatal for the object: its symbols still name frames, and frames in it
	// fall back to the frame pointer.
	_ = errs
	return nil
}

// ehFromSegment finds .eh_frame through PT_GNU_EH_FRAME when there are no section headers.
func (o *object) ehFromSegment() (*cfi.Table, error) {
	for _, p := range o.ef.Progs {
		if p.Type != elf.PT_GNU_EH_FRAME || p.Filesz > maxSection {
			continue
		}
		hdr := make([]byte, p.Filesz)
		if _, err := p.ReadAt(hdr, 0); err != nil {
			return nil, err
		}
		if len(hdr) < 8 || hdr[0] != 1 || hdr[1] != 0x1b {
			return nil, errors.New("PT_GNU_EH_FRAME: unexpected header")
		}
		ehAddr := uint64(int64(p.Vaddr+4) + int64(int32(o.ef.ByteOrder.Uint32(hdr[4:]))))
		// .eh_frame runs from there to the end of its segment at most; its terminator ends the
		// index before that.
		for _, l := range o.ef.Progs {
			if l.Type == elf.PT_LOAD && ehAddr >= l.Vaddr && ehAddr < l.Vaddr+l.Filesz {
				n := l.Vaddr + l.Filesz - ehAddr
				if n > maxSection {
					n = maxSection
				}
				data := make([]byte, n)
				if _, err := l.ReadAt(data, int64(ehAddr-l.Vaddr)); err != nil {
					return nil, err
				}
				return cfi.NewTable(cfi.Section{Format: cfi.EHFrame, Data: data, Addr: ehAddr, PtrSize: 8, Order: o.ef.ByteOrder}, hdr, p.Vaddr)
			}
		}
	}
	return nil, errors.New("no .eh_frame")
}

// vaddr turns an address of mapping m into a virtual address of the object.
func (o *object) vaddr(m *Mapping, addr uint64) (uint64, bool) {
	fo := addr - m.Start + m.Offset
	for _, l := range o.loads {
		if fo >= l.off && fo < l.off+l.filesz {
			return fo - l.off + l.vaddr, true
		}
	}
	return 0, false
}

// row returns the CFI row at virtual address pc: from .eh_frame, else .debug_frame. It returns
// cfi.ErrNoFDE when neither covers pc.
func (o *object) row(pc uint64) (*cfi.Row, error) {
	if r, ok := o.rows[pc]; ok {
		return r, nil
	}
	var fde *cfi.FDE
	err := cfi.ErrNoFDE
	for _, t := range []*cfi.Table{o.eh, o.dbg} {
		if t == nil {
			continue
		}
		if fde, err = t.Lookup(pc); err == nil {
			break
		}
		if !errors.Is(err, cfi.ErrNoFDE) {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	row, err := fde.RowAt(pc, cfiArch(o.arch))
	if err != nil {
		return nil, err
	}
	if o.rows == nil || len(o.rows) >= maxRowCache {
		o.rows = map[uint64]*cfi.Row{}
	}
	o.rows[pc] = row
	return row, nil
}

func cfiArch(a Arch) cfi.Arch {
	if a == ARM64 {
		return cfi.ARM64
	}
	return cfi.AMD64
}

func (o *object) close() {
	if o.closer != nil {
		o.closer.Close()
		o.closer = nil
	}
}

// symtab is a sorted table of function symbols.
type symtab struct {
	syms    []sym
	strs    []byte
	demangl map[int]string
}

type sym struct {
	addr, size uint64
	name       uint32
	rank       uint8 // lower is preferred among aliases
}

// parseSymtab reads an ELF64 symbol table: functions (and IFUNC resolvers) with a size, defined in
// a section. A symbol without a size cannot say where it ends, and would claim every address up
// to the next one.
func parseSymtab(data, strs []byte, order binary.ByteOrder) *symtab {
	const entSize = 24
	t := &symtab{strs: strs}
	for off := 0; off+entSize <= len(data); off += entSize {
		e := data[off : off+entSize]
		name := order.Uint32(e[0:])
		info := e[4]
		shndx := order.Uint16(e[6:])
		value := order.Uint64(e[8:])
		size := order.Uint64(e[16:])
		typ := elf.SymType(info & 0xf)
		bind := elf.SymBind(info >> 4)
		if (typ != elf.STT_FUNC && typ != elf.STT_GNU_IFUNC) || shndx == uint16(elf.SHN_UNDEF) || size == 0 || value == 0 || uint64(name) >= uint64(len(strs)) {
			continue
		}
		var rank uint8
		switch bind {
		case elf.STB_GLOBAL:
			rank = 0
		case elf.STB_WEAK:
			rank = 1
		default:
			rank = 2
		}
		t.syms = append(t.syms, sym{addr: value, size: size, name: name, rank: rank})
	}
	// Aliases share an address (open, open64, __open64, __libc_open64 in glibc): keep one,
	// the global one, then the one with the fewest leading underscores, then the shortest, so
	// that the choice does not depend on the table's order.
	slices.SortFunc(t.syms, func(a, b sym) int {
		if a.addr != b.addr {
			return cmp.Compare(a.addr, b.addr)
		}
		if a.rank != b.rank {
			return cmp.Compare(a.rank, b.rank)
		}
		// Only aliases get here (a few in a thousand symbols): the names are compared without
		// allocating.
		na, nb := t.bytes(a.name), t.bytes(b.name)
		ua, ub := len(na)-len(bytes.TrimLeft(na, "_")), len(nb)-len(bytes.TrimLeft(nb, "_"))
		if ua != ub {
			return cmp.Compare(ua, ub)
		}
		if len(na) != len(nb) {
			return cmp.Compare(len(na), len(nb))
		}
		return bytes.Compare(na, nb)
	})
	out := t.syms[:0]
	for i, s := range t.syms {
		if i > 0 && s.addr == out[len(out)-1].addr {
			continue
		}
		out = append(out, s)
	}
	t.syms = out
	return t
}

func (t *symtab) str(off uint32) string { return string(t.bytes(off)) }

// bytes returns the NUL-terminated name at off, without copying.
func (t *symtab) bytes(off uint32) []byte {
	if int(off) >= len(t.strs) {
		return nil
	}
	b := t.strs[off:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return b
}

// lookup returns the symbol containing addr: the nearest one at or below it whose size reaches
// it. A few preceding symbols are looked at too, for a symbol nested in a larger one.
func (t *symtab) lookup(addr uint64) (int, bool) {
	i := sort.Search(len(t.syms), func(i int) bool { return t.syms[i].addr > addr }) - 1
	for j := i; j >= 0 && j > i-4; j-- {
		if s := t.syms[j]; addr-s.addr < s.size {
			return j, true
		}
	}
	return 0, false
}

// name returns symbol i's name, demangled (C++ and Rust), cached.
func (t *symtab) name(i int) string {
	if n, ok := t.demangl[i]; ok {
		return n
	}
	n := t.str(t.syms[i].name)
	// .symtab keeps versioned names of default versions ("__libc_start_main@@GLIBC_2.34"):
	// the version says nothing about the code path.
	if at := strings.IndexByte(n, '@'); at > 0 {
		n = n[:at]
	}
	n = demangleName(n)
	if t.demangl == nil {
		t.demangl = map[int]string{}
	}
	t.demangl[i] = n
	return n
}

// loadSymbols reads .symtab, else .dynsym. Stripped objects (every shared library of a
// distribution) have only .dynsym, their exported functions; debug files found by build ID
// bring back .symtab.
func (o *object) loadSymbols() {
	if o.symsLoaded {
		return
	}
	o.symsLoaded = true
	o.syms, o.symErr = symbolsOf(o.ef, elf.SHT_SYMTAB)
	o.symSource = "symtab"
	if o.syms == nil || len(o.syms.syms) == 0 {
		syms, err := symbolsOf(o.ef, elf.SHT_DYNSYM)
		if syms != nil && len(syms.syms) > 0 {
			o.syms, o.symErr, o.symSource = syms, nil, "dynsym"
		} else if o.symErr == nil {
			o.symErr = err
		}
	}
}

func symbolsOf(ef *elf.File, typ elf.SectionType) (st *symtab, err error) {
	defer func() {
		if v := recover(); v != nil {
			st, err = nil, fmt.Errorf("malformed symbol table: %v", v)
		}
	}()
	for _, s := range ef.Sections {
		if s.Type != typ {
			continue
		}
		if s.Link == 0 || int(s.Link) >= len(ef.Sections) {
			return nil, fmt.Errorf("%s: no string table", s.Name)
		}
		data, err := sectionData(s)
		if err != nil {
			return nil, err
		}
		strs, err := sectionData(ef.Sections[s.Link])
		if err != nil {
			return nil, err
		}
		return parseSymtab(data, strs, ef.ByteOrder), nil
	}
	return nil, nil
}

// openDebugFile returns an object from a separate debug file (/usr/lib/debug/.build-id/xx/
// yyyy.debug, where Debian's -dbg packages put them) whose build ID matches, for its .symtab.
func openDebugFile(roots []string, buildID string) (*object, error) {
	if len(buildID) < 4 {
		return nil, os.ErrNotExist
	}
	for _, root := range roots {
		path := root + "/usr/lib/debug/.build-id/" + buildID[:2] + "/" + buildID[2:] + ".debug"
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		o, err := openDebugObject(f)
		if err != nil || o.buildID != buildID {
			f.Close()
			continue
		}
		return o, nil
	}
	return nil, os.ErrNotExist
}

func openDebugObject(f *os.File) (obj *object, err error) {
	defer func() {
		if v := recover(); v != nil {
			obj, err = nil, fmt.Errorf("malformed ELF object: %v", v)
		}
	}()
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, err
	}
	return &object{file: f, closer: f, ef: ef, buildID: readBuildID(ef)}, nil
}
