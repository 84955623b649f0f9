package cfi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrNoFDE says that no entry covers an address: the code there has no call frame information
// (hand-written assembly without directives, JIT code, or an address that is not code at all).
var ErrNoFDE = errors.New("no call frame information for this address")

// Format tells the two flavours of the same tables apart. They differ in how a CIE is marked, how
// an FDE points at its CIE, and in that only .eh_frame has pointer encodings.
type Format int

const (
	// EHFrame is .eh_frame, the tables the C++ runtime unwinds with; every ELF object of a
	// Linux distribution has them unless built with -fno-asynchronous-unwind-tables.
	EHFrame Format = iota
	// DebugFrame is .debug_frame, DWARF's own section, found in objects built with -g and in
	// separate debug files.
	DebugFrame
)

// Section is one section of call frame information as the object lays it out.
type Section struct {
	Format Format
	Data   []byte
	// Addr is the virtual address of Data[0] in the object (sh_addr), which pc-relative pointers
	// in .eh_frame are relative to. Unused for .debug_frame.
	Addr uint64
	// PtrSize is the object's address size: 8 for ELFCLASS64, 4 for ELFCLASS32.
	PtrSize int
	Order   binary.ByteOrder
}

// CIE is a common information entry, the part several FDEs share.
type CIE struct {
	Version      uint8
	Augmentation string
	CodeAlign    uint64
	DataAlign    int64
	RAReg        uint64
	FDEEncoding  byte
	LSDAEncoding byte
	SignalFrame  bool // 'S': the frame is a signal trampoline's, whose PC is not a return address
	Initial      []byte
	hasAugData   bool // 'z'
	addrSize     int
	segmentSize  int
	order        binary.ByteOrder
}

// FDE is a frame description entry: the call frame information of one function (or of one range
// of code such as the PLT).
type FDE struct {
	CIE          *CIE
	Start, End   uint64 // the code it covers, [Start, End), in the object's virtual addresses
	Instructions []byte
	// Offset is where the FDE starts in its section, for error messages and tests.
	Offset int
}

// Table looks FDEs up by address in one section, through .eh_frame_hdr's sorted table when there
// is one, else through an index built by reading the whole section once.
type Table struct {
	sec  Section
	cies map[int]*CIE

	// From .eh_frame_hdr: the table of (initial location, FDE address) pairs.
	hdr        []byte
	hdrAddr    uint64
	hdrEnc     byte
	hdrCount   int
	hdrEntSize int
	hdrTable   int // offset of the table in hdr

	index []indexEntry // built when there is no usable hdr
}

type indexEntry struct {
	start, end uint64
	off        int
}

// maxEntries bounds the work of indexing a section (glibc has about 3,000 FDEs, node 170,000).
const maxEntries = 1 << 22

// NewTable prepares lookups in sec. hdr, when not nil, is the content of .eh_frame_hdr at virtual
// address hdrAddr; a header that does not describe sec or that cannot be searched is ignored in
// favour of indexing sec.
func NewTable(sec Section, hdr []byte, hdrAddr uint64) (*Table, error) {
	if sec.PtrSize != 4 && sec.PtrSize != 8 {
		return nil, fmt.Errorf("cfi: address size %d", sec.PtrSize)
	}
	if sec.Order == nil {
		sec.Order = binary.LittleEndian
	}
	t := &Table{sec: sec, cies: map[int]*CIE{}}
	if sec.Format == EHFrame && hdr != nil && t.useHdr(hdr, hdrAddr) {
		return t, nil
	}
	if err := t.buildIndex(); err != nil {
		return nil, err
	}
	return t, nil
}

// useHdr accepts .eh_frame_hdr: version 1, a pointer to .eh_frame that matches sec, and a table of
// fixed-size entries (datarel|sdata4 in practice).
func (t *Table) useHdr(hdr []byte, hdrAddr uint64) bool {
	r := reader{b: hdr, order: t.sec.Order}
	version := r.u8()
	ptrEnc, countEnc, tableEnc := r.u8(), r.u8(), r.u8()
	if r.err != nil || version != 1 || tableEnc == peOmit || countEnc == peOmit {
		return false
	}
	b := &bases{sectionAddr: hdrAddr, dataAddr: hdrAddr, dataOK: true}
	if ptrEnc != peOmit {
		p, err := r.pointer(ptrEnc, t.sec.PtrSize, b, false)
		if err != nil || p != t.sec.Addr {
			return false
		}
	}
	n, err := r.pointer(countEnc, t.sec.PtrSize, b, true)
	if err != nil {
		return false
	}
	size := encodedSize(tableEnc, t.sec.PtrSize)
	if size == 0 || tableEnc&peIndirect != 0 {
		return false
	}
	if n > uint64(r.left()/(2*size)) {
		return false
	}
	t.hdr, t.hdrAddr, t.hdrEnc, t.hdrCount, t.hdrEntSize, t.hdrTable = hdr, hdrAddr, tableEnc, int(n), 2*size, r.off
	return true
}

// hdrEntry decodes entry i of the .eh_frame_hdr table.
func (t *Table) hdrEntry(i int) (loc, fde uint64, err error) {
	off := t.hdrTable + i*t.hdrEntSize
	r := reader{b: t.hdr, off: off, order: t.sec.Order}
	b := &bases{sectionAddr: t.hdrAddr, dataAddr: t.hdrAddr, dataOK: true}
	if loc, err = r.pointer(t.hdrEnc, t.sec.PtrSize, b, false); err != nil {
		return
	}
	fde, err = r.pointer(t.hdrEnc, t.sec.PtrSize, b, false)
	return
}

// buildIndex reads every entry of the section and sorts the FDEs by address.
func (t *Table) buildIndex() error {
	off := 0
	for n := 0; off < len(t.sec.Data); n++ {
		if n > maxEntries {
			return malformed("more than %d entries", maxEntries)
		}
		e, err := t.entryAt(off)
		if err != nil {
			return err
		}
		if e.terminator {
			break
		}
		if !e.isCIE {
			fde, err := t.parseFDE(e)
			if err != nil {
				return err
			}
			// Entries for discarded functions are left with a zero start by some linkers; they
			// would claim address 0 and are skipped, as the runtime unwinder does.
			if fde.Start != 0 && fde.End > fde.Start {
				t.index = append(t.index, indexEntry{fde.Start, fde.End, off})
			}
		}
		off = e.next
	}
	sort.Slice(t.index, func(i, j int) bool { return t.index[i].start < t.index[j].start })
	return nil
}

// entry is the framing of one CIE or FDE: its length, its id, and where its body starts.
type entry struct {
	off        int // offset of the length field
	body       int // offset after the id field
	next       int // offset of the next entry
	isCIE      bool
	terminator bool
	dwarf64    bool
	cieRef     int // for an FDE, the offset of its CIE
}

func (t *Table) entryAt(off int) (entry, error) {
	e := entry{off: off}
	if off < 0 || off >= len(t.sec.Data) {
		return e, malformed("entry offset %d outside the section (%d bytes)", off, len(t.sec.Data))
	}
	r := reader{b: t.sec.Data, off: off, order: t.sec.Order}
	length := uint64(r.u32())
	if r.err != nil {
		return e, r.err
	}
	if length == 0 {
		if t.sec.Format == EHFrame {
			e.terminator = true
			return e, nil
		}
		return e, malformed("zero-length entry at %d", off)
	}
	if length == 0xffffffff {
		e.dwarf64 = true
		length = r.u64()
	}
	start := r.off
	if r.err != nil || length > uint64(r.left()) {
		return e, malformed("entry at %d: length %d past the end of the section", off, length)
	}
	e.next = start + int(length)
	idPos := r.off
	var id uint64
	if e.dwarf64 {
		id = r.u64()
	} else {
		id = uint64(r.u32())
	}
	if r.err != nil || r.off > e.next {
		return e, malformed("entry at %d too short for its id", off)
	}
	e.body = r.off
	switch t.sec.Format {
	case EHFrame:
		// The id is 0 for a CIE; in an FDE it is the distance back from the id field to the CIE.
		if id == 0 {
			e.isCIE = true
		} else {
			if id > uint64(idPos) {
				return e, malformed("FDE at %d points before the section", off)
			}
			e.cieRef = idPos - int(id)
		}
	case DebugFrame:
		// The id is all ones for a CIE; in an FDE it is the CIE's offset in the section.
		if (!e.dwarf64 && id == 0xffffffff) || (e.dwarf64 && id == ^uint64(0)) {
			e.isCIE = true
		} else {
			if id >= uint64(len(t.sec.Data)) {
				return e, malformed("FDE at %d points past the section", off)
			}
			e.cieRef = int(id)
		}
	}
	return e, nil
}

// cie parses (once) the CIE at off.
func (t *Table) cie(off int) (*CIE, error) {
	if c, ok := t.cies[off]; ok {
		return c, nil
	}
	e, err := t.entryAt(off)
	if err != nil {
		return nil, err
	}
	if e.terminator || !e.isCIE {
		return nil, malformed("FDE's CIE pointer to %d is not a CIE", off)
	}
	r := reader{b: t.sec.Data[:e.next], off: e.body, order: t.sec.Order}
	c := &CIE{FDEEncoding: peAbsptr, LSDAEncoding: peOmit, addrSize: t.sec.PtrSize, order: t.sec.Order}
	c.Version = r.u8()
	switch c.Version {
	case 1, 3, 4:
	default:
		if r.err == nil {
			return nil, malformed("CIE at %d: version %d", off, c.Version)
		}
	}
	c.Augmentation = r.cstring()
	if c.Version == 4 {
		c.addrSize = int(r.u8())
		c.segmentSize = int(r.u8())
		if r.err == nil && (c.addrSize != 4 && c.addrSize != 8 || c.segmentSize != 0) {
			return nil, malformed("CIE at %d: address size %d, segment size %d", off, c.addrSize, c.segmentSize)
		}
	}
	c.CodeAlign = r.uleb()
	c.DataAlign = r.sleb()
	if c.Version == 1 {
		c.RAReg = uint64(r.u8())
	} else {
		c.RAReg = r.uleb()
	}
	if r.err != nil {
		return nil, r.err
	}
	aug := c.Augmentation
	if strings.HasPrefix(aug, "z") {
		c.hasAugData = true
		n := r.uleb()
		if r.err != nil || n > uint64(r.left()) {
			return nil, malformed("CIE at %d: augmentation data length", off)
		}
		end := r.off + int(n)
		ar := reader{b: t.sec.Data[:end], off: r.off, order: t.sec.Order}
		b := &bases{sectionAddr: t.sec.Addr}
	augLoop:
		for i := 1; i < len(aug); i++ {
			switch aug[i] {
			case 'R':
				c.FDEEncoding = ar.u8()
			case 'L':
				c.LSDAEncoding = ar.u8()
			case 'P':
				enc := ar.u8()
				// The personality routine's address is of no use for unwinding; only its size
				// matters, to reach what follows.
				if _, err := ar.pointer(enc&^peIndirect, c.addrSize, b, true); err != nil {
					return nil, fmt.Errorf("CIE at %d: personality: %w", off, err)
				}
			case 'S':
				c.SignalFrame = true
			case 'B', 'G':
				// AArch64: 'B' signs return addresses with the B key, 'G' marks MTE-tagged
				// frames; neither changes where things are.
			default:
				// 'z' says how long the data is, so an unknown letter only stops the parsing
				// of the letters, not of the CIE.
				break augLoop
			}
		}
		if ar.err != nil {
			return nil, fmt.Errorf("CIE at %d: augmentation data: %w", off, ar.err)
		}
		r.off = end
	} else {
		for _, ch := range aug {
			switch ch {
			case 'S':
				c.SignalFrame = true
			default:
				if aug == "eh" {
					// GCC 2's "eh" is followed by an address-sized pointer.
					r.bytes(t.sec.PtrSize)
					continue
				}
				return nil, malformed("CIE at %d: augmentation %q without 'z'", off, aug)
			}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	c.Initial = t.sec.Data[r.off:e.next]
	t.cies[off] = c
	return c, nil
}

// parseFDE decodes the FDE framed by e.
func (t *Table) parseFDE(e entry) (*FDE, error) {
	c, err := t.cie(e.cieRef)
	if err != nil {
		return nil, fmt.Errorf("FDE at %d: %w", e.off, err)
	}
	r := reader{b: t.sec.Data[:e.next], off: e.body, order: t.sec.Order}
	f := &FDE{CIE: c, Offset: e.off}
	b := &bases{sectionAddr: t.sec.Addr}
	enc := c.FDEEncoding
	if t.sec.Format == DebugFrame {
		enc = peAbsptr
	}
	start, err := r.pointer(enc, c.addrSize, b, false)
	if err != nil {
		return nil, fmt.Errorf("FDE at %d: initial location: %w", e.off, err)
	}
	length, err := r.pointer(enc, c.addrSize, b, true)
	if err != nil {
		return nil, fmt.Errorf("FDE at %d: address range: %w", e.off, err)
	}
	f.Start = start
	f.End = start + length
	if f.End < f.Start {
		return nil, malformed("FDE at %d: range wraps around", e.off)
	}
	if c.hasAugData {
		n := r.uleb()
		if r.err != nil || n > uint64(r.left()) {
			return nil, malformed("FDE at %d: augmentation data length", e.off)
		}
		r.off += int(n)
	}
	if r.err != nil {
		return nil, r.err
	}
	f.Instructions = t.sec.Data[r.off:e.next]
	return f, nil
}

// FDEAt decodes the FDE that starts at offset off of the section.
func (t *Table) FDEAt(off int) (*FDE, error) {
	e, err := t.entryAt(off)
	if err != nil {
		return nil, err
	}
	if e.terminator || e.isCIE {
		return nil, malformed("no FDE at offset %d", off)
	}
	return t.parseFDE(e)
}

// Lookup returns the FDE covering pc (a virtual address of the object), or ErrNoFDE.
func (t *Table) Lookup(pc uint64) (*FDE, error) {
	if t.hdr != nil {
		// The largest initial location <= pc.
		lo, hi := 0, t.hdrCount
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			loc, _, err := t.hdrEntry(mid)
			if err != nil {
				return nil, err
			}
			if loc <= pc {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		if lo == 0 {
			return nil, ErrNoFDE
		}
		_, fdeAddr, err := t.hdrEntry(lo - 1)
		if err != nil {
			return nil, err
		}
		if fdeAddr < t.sec.Addr || fdeAddr-t.sec.Addr >= uint64(len(t.sec.Data)) {
			return nil, malformed(".eh_frame_hdr points outside .eh_frame (0x%x)", fdeAddr)
		}
		f, err := t.FDEAt(int(fdeAddr - t.sec.Addr))
		if err != nil {
			return nil, err
		}
		if pc < f.Start || pc >= f.End {
			return nil, ErrNoFDE
		}
		return f, nil
	}
	i := sort.Search(len(t.index), func(i int) bool { return t.index[i].start > pc }) - 1
	if i < 0 || pc >= t.index[i].end {
		return nil, ErrNoFDE
	}
	return t.FDEAt(t.index[i].off)
}

// Len is the number of FDEs the table can find.
func (t *Table) Len() int {
	if t.hdr != nil {
		return t.hdrCount
	}
	return len(t.index)
}
