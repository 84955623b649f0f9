package cfi

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
)

// asm builds .eh_frame and .debug_frame bytes for the tests.
type asm struct{ bytes.Buffer }

func (a *asm) u8(v ...byte)  { a.Write(v) }
func (a *asm) u16(v uint16)  { a.Write(binary.LittleEndian.AppendUint16(nil, v)) }
func (a *asm) u32(v uint32)  { a.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (a *asm) u64(v uint64)  { a.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func (a *asm) uleb(v uint64) { a.Write(uleb(v)) }
func (a *asm) sleb(v int64)  { a.Write(sleb(v)) }

func uleb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// ehCIE is the CIE GCC emits on x86_64: "zR", code alignment 1, data alignment -8, return
// address in r16, FDE pointers pcrel|sdata4, CFA = rsp+8 and the return address at CFA-8.
func ehCIE(aug string, augData []byte, initial []byte) []byte {
	var body asm
	body.u32(0) // CIE id
	body.u8(1)  // version
	body.WriteString(aug)
	body.u8(0)
	body.uleb(1)
	body.sleb(-8)
	body.u8(16)
	if len(aug) > 0 && aug[0] == 'z' {
		body.uleb(uint64(len(augData)))
		body.Write(augData)
	}
	body.Write(initial)
	for body.Len()%8 != 4 {
		body.u8(cfaNop)
	}
	var a asm
	a.u32(uint32(body.Len()))
	a.Write(body.Bytes())
	return a.Bytes()
}

var x86Initial = []byte{cfaDefCFA, 7, 8, cfaOffset | 16, 1}

// ehFDE appends an FDE at offset off of a section at address secAddr, for [start, start+n),
// pointing back at the CIE at cieOff.
func ehFDE(off, cieOff int, secAddr, start, n uint64, ins []byte) []byte {
	var body asm
	body.u32(uint32(off + 4 - cieOff)) // distance from this field back to the CIE
	pcrelPos := secAddr + uint64(off) + 8
	body.u32(uint32(int32(int64(start) - int64(pcrelPos))))
	body.u32(uint32(n))
	body.uleb(0) // augmentation data length ('z')
	body.Write(ins)
	for body.Len()%8 != 4 {
		body.u8(cfaNop)
	}
	var a asm
	a.u32(uint32(body.Len()))
	a.Write(body.Bytes())
	return a.Bytes()
}

const secAddr = 0x2000

// oneFDE is a section with the x86_64 CIE and one FDE for [0x1000, 0x1100) with ins.
func oneFDE(ins []byte) []byte {
	cie := ehCIE("zR", []byte{pePcrel | peSdata4}, x86Initial)
	return cat(cie, ehFDE(len(cie), 0, secAddr, 0x1000, 0x100, ins), []byte{0, 0, 0, 0})
}

func rowAt(t *testing.T, sec []byte, pc uint64) (*Row, error) {
	t.Helper()
	tab, err := NewTable(Section{Format: EHFrame, Data: sec, Addr: secAddr, PtrSize: 8, Order: binary.LittleEndian}, nil, 0)
	if err != nil {
		return nil, err
	}
	f, err := tab.Lookup(pc)
	if err != nil {
		return nil, err
	}
	return f.RowAt(pc, AMD64)
}

func TestRows(t *testing.T) {
	// A function with a frame pointer, as GCC emits it:
	//   0x1000 push %rbp            CFA rsp+8
	//   0x1001 mov %rsp,%rbp        CFA rsp+16, rbp at CFA-16
	//   0x1004 ...                  CFA rbp+16
	//   0x1040 pop %rbp / ret       CFA rsp+8 (remember/restore around the epilogue)
	prologue := []byte{
		cfaAdvanceLoc | 1, cfaDefCFAOffset, 16, cfaOffset | 6, 2,
		cfaAdvanceLoc | 3, cfaDefCFARegister, 6,
		cfaAdvanceLoc1, 0x3c, cfaRememberState, cfaDefCFA, 7, 8,
		cfaAdvanceLoc | 1, cfaRestoreState,
	}
	cases := []struct {
		name    string
		ins     []byte
		pc      uint64
		cfa     string
		regs    map[uint64]string
		wantErr string
	}{
		{name: "entry", ins: prologue, pc: 0x1000, cfa: "r7+8", regs: map[uint64]string{16: "offset(-8)", 6: "unspecified"}},
		{name: "after push", ins: prologue, pc: 0x1001, cfa: "r7+16", regs: map[uint64]string{6: "offset(-16)"}},
		{name: "last byte of mov", ins: prologue, pc: 0x1003, cfa: "r7+16"},
		{name: "body", ins: prologue, pc: 0x1004, cfa: "r6+16", regs: map[uint64]string{6: "offset(-16)", 16: "offset(-8)"}},
		{name: "epilogue", ins: prologue, pc: 0x1040, cfa: "r7+8", regs: map[uint64]string{6: "offset(-16)"}},
		{name: "restored after epilogue", ins: prologue, pc: 0x1041, cfa: "r6+16"},
		{name: "end of range", ins: prologue, pc: 0x10ff, cfa: "r6+16"},
		{name: "advance_loc2 and 4", ins: []byte{cfaAdvanceLoc2, 0x10, 0, cfaDefCFAOffset, 24, cfaAdvanceLoc4, 0x10, 0, 0, 0, cfaDefCFAOffset, 32}, pc: 0x101f, cfa: "r7+24"},
		{name: "offset_extended_sf", ins: []byte{cfaOffsetExtendedSF, 3, 0x7e}, pc: 0x1000, cfa: "r7+8", regs: map[uint64]string{3: "offset(16)"}},
		{name: "offset_extended", ins: []byte{cfaOffsetExtended, 12, 3}, pc: 0x1000, regs: map[uint64]string{12: "offset(-24)"}},
		{name: "negative_offset_extended", ins: []byte{cfaGNUNegOffsetExtSF, 12, 3}, pc: 0x1000, regs: map[uint64]string{12: "offset(24)"}},
		{name: "val_offset", ins: []byte{cfaValOffset, 3, 2, cfaValOffsetSF, 4, 0x7f}, pc: 0x1000, regs: map[uint64]string{3: "val_offset(-16)", 4: "val_offset(8)"}},
		{name: "register and same value", ins: []byte{cfaRegister, 3, 12, cfaSameValue, 6, cfaUndefined, 16}, pc: 0x1000, regs: map[uint64]string{3: "register(r12)", 6: "same", 16: "undefined"}},
		{name: "restore to the CIE's rule", ins: []byte{cfaOffset | 16, 3, cfaAdvanceLoc | 1, cfaRestore | 16}, pc: 0x1001, regs: map[uint64]string{16: "offset(-8)"}},
		{name: "restore_extended", ins: []byte{cfaUndefined, 16, cfaAdvanceLoc | 1, cfaRestoreExtended, 16}, pc: 0x1001, regs: map[uint64]string{16: "offset(-8)"}},
		{name: "def_cfa_sf", ins: []byte{cfaDefCFASF, 6, 0x7e}, pc: 0x1000, cfa: "r6+16"},
		{name: "def_cfa_offset_sf", ins: []byte{cfaDefCFAOffsetSF, 0x7c}, pc: 0x1000, cfa: "r7+32"},
		{name: "args_size is skipped", ins: []byte{cfaGNUArgsSize, 0x80, 0x01, cfaDefCFAOffset, 40}, pc: 0x1000, cfa: "r7+40"},
		{name: "high registers dropped", ins: []byte{cfaOffsetExtended, 0x80, 0x01, 2, cfaDefCFAOffset, 48}, pc: 0x1000, cfa: "r7+48"},
		{name: "set_loc", ins: []byte{cfaSetLoc}, pc: 0x1000, wantErr: "pc-relative DW_CFA_set_loc"},
		{name: "def_cfa_expression", ins: []byte{cfaDefCFAExpression, 3, opBreg0 + 7, 8, opDeref}, pc: 0x1000, cfa: "cfa_expression(77 08 06)"},
		{name: "expression rule", ins: []byte{cfaExpression, 6, 2, opBreg0 + 6, 0x78}, pc: 0x1000, regs: map[uint64]string{6: "expression(76 78)"}},
		{name: "val_expression rule", ins: []byte{cfaValExpression, 7, 2, opBreg0 + 7, 8}, pc: 0x1000, regs: map[uint64]string{7: "val_expression(77 08)"}},
		{name: "unknown opcode", ins: []byte{0x3f}, pc: 0x1000, wantErr: "unknown call frame instruction 0x3f"},
		{name: "restore_state without remember", ins: []byte{cfaRestoreState}, pc: 0x1000, wantErr: "without remember_state"},
		{name: "window_save on x86", ins: []byte{cfaGNUWindowSave}, pc: 0x1000, wantErr: "outside AArch64"},
		{name: "truncated operand", ins: []byte{cfaDefCFA, 7, 0x80, 0x80, 0x80, 0x80, 0x80}, pc: 0x1000, wantErr: "runs past the end"},
		{name: "expression longer than the FDE", ins: []byte{cfaDefCFAExpression, 0x7f, 1}, pc: 0x1000, wantErr: "longer than its FDE"},
		{name: "def_cfa_offset after an expression", ins: []byte{cfaDefCFAExpression, 1, opLit0, cfaDefCFAOffset, 8}, pc: 0x1000, wantErr: "without a register CFA rule"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			row, err := rowAt(t, oneFDE(c.ins), c.pc)
			if c.wantErr != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.wantErr)) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("error %v does not wrap ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.cfa != "" && row.CFA.String() != c.cfa {
				t.Errorf("CFA %s, want %s", row.CFA, c.cfa)
			}
			for reg, want := range c.regs {
				if got := row.Rule(reg).String(); got != want {
					t.Errorf("r%d: %s, want %s", reg, got, want)
				}
			}
			if row.RAReg != 16 || row.Start != 0x1000 || row.End != 0x1100 {
				t.Errorf("RA r%d range [0x%x,0x%x)", row.RAReg, row.Start, row.End)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	cie := ehCIE("zR", []byte{pePcrel | peSdata4}, x86Initial)
	f1 := ehFDE(len(cie), 0, secAddr, 0x1000, 0x10, nil)
	f2 := ehFDE(len(cie)+len(f1), 0, secAddr, 0x1020, 0x10, []byte{cfaDefCFAOffset, 16})
	sec := cat(cie, f1, f2, []byte{0, 0, 0, 0})
	// .eh_frame_hdr: version 1, eh_frame_ptr pcrel|sdata4, count udata4, table datarel|sdata4.
	const hdrAddr = 0x800
	var hdr asm
	hdr.u8(1, pePcrel|peSdata4, peUdata4, peDatarel|peSdata4)
	hdr.u32(uint32(secAddr - (hdrAddr + 4)))
	hdr.u32(2)
	hdr.u32(0x1000 - hdrAddr)
	hdr.u32(uint32(secAddr + len(cie) - hdrAddr))
	hdr.u32(0x1020 - hdrAddr)
	hdr.u32(uint32(secAddr + len(cie) + len(f1) - hdrAddr))

	cases := []struct {
		pc     uint64
		offset int // the FDE's offset, -1 for none
	}{
		{0xfff, -1}, {0x1000, len(cie)}, {0x100f, len(cie)}, {0x1010, -1}, {0x101f, -1},
		{0x1020, len(cie) + len(f1)}, {0x102f, len(cie) + len(f1)}, {0x1030, -1}, {0, -1}, {^uint64(0), -1},
	}
	for _, withHdr := range []bool{false, true} {
		var h []byte
		if withHdr {
			h = hdr.Bytes()
		}
		tab, err := NewTable(Section{Format: EHFrame, Data: sec, Addr: secAddr, PtrSize: 8}, h, hdrAddr)
		if err != nil {
			t.Fatal(err)
		}
		if (tab.hdr != nil) != withHdr {
			t.Fatalf("hdr used: %v, want %v", tab.hdr != nil, withHdr)
		}
		if tab.Len() != 2 {
			t.Errorf("Len %d, want 2", tab.Len())
		}
		for _, c := range cases {
			f, err := tab.Lookup(c.pc)
			if c.offset < 0 {
				if !errors.Is(err, ErrNoFDE) {
					t.Errorf("hdr %v: 0x%x: %v, %v; want ErrNoFDE", withHdr, c.pc, f, err)
				}
				continue
			}
			if err != nil || f.Offset != c.offset {
				t.Errorf("hdr %v: 0x%x: FDE %v, %v; want the one at %d", withHdr, c.pc, f, err, c.offset)
			}
		}
	}
	// A header whose eh_frame_ptr does not point at this section is ignored.
	bad := bytes.Clone(hdr.Bytes())
	bad[4]++
	tab, err := NewTable(Section{Format: EHFrame, Data: sec, Addr: secAddr, PtrSize: 8}, bad, hdrAddr)
	if err != nil || tab.hdr != nil {
		t.Errorf("mismatched header: used %v, %v", tab != nil && tab.hdr != nil, err)
	}
}

// TestCIEAugmentations decodes the CIEs of C++ code (zPLR: personality, LSDA, FDE encoding),
// signal trampolines (zRS) and DWARF 4 .debug_frame.
func TestCIEAugmentations(t *testing.T) {
	cases := []struct {
		name    string
		aug     string
		augData []byte
		wantEnc byte
		signal  bool
		wantErr string
	}{
		{name: "zR", aug: "zR", augData: []byte{0x1b}, wantEnc: 0x1b},
		{name: "zPLR", aug: "zPLR", augData: []byte{0x9b, 1, 2, 3, 4, 0x1b, 0x1b}, wantEnc: 0x1b},
		{name: "zRS", aug: "zRS", augData: []byte{0x1b}, wantEnc: 0x1b, signal: true},
		{name: "unknown letter after z", aug: "zRX", augData: []byte{0x1b, 9, 9}, wantEnc: 0x1b},
		{name: "no z", aug: "Q", wantErr: "without 'z'"},
		{name: "bad personality encoding", aug: "zP", augData: []byte{0x0d, 1}, wantErr: "pointer encoding 0x0d"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cie := ehCIE(c.aug, c.augData, x86Initial)
			tab := &Table{sec: Section{Format: EHFrame, Data: cie, Addr: secAddr, PtrSize: 8, Order: binary.LittleEndian}, cies: map[int]*CIE{}}
			got, err := tab.cie(0)
			if c.wantErr != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.wantErr)) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.FDEEncoding != c.wantEnc || got.SignalFrame != c.signal || got.DataAlign != -8 || got.CodeAlign != 1 || got.RAReg != 16 {
				t.Errorf("%+v", got)
			}
			if !bytes.HasPrefix(got.Initial, x86Initial) {
				t.Errorf("initial instructions % x", got.Initial)
			}
		})
	}

	// .debug_frame, DWARF 4: CIE id all ones, version 4 with address and segment sizes, FDEs
	// with absolute addresses and the CIE's section offset.
	var cie asm
	cie.u32(0xffffffff)
	cie.u8(4)
	cie.u8(0)    // no augmentation
	cie.u8(8, 0) // address size, segment size
	cie.uleb(4)
	cie.sleb(-8)
	cie.uleb(30)
	cie.u8(cfaDefCFA, 31, 0)
	var fde asm
	fde.u32(0) // CIE at offset 0
	fde.u64(0x400000)
	fde.u64(0x40)
	fde.u8(cfaAdvanceLoc|1, cfaDefCFAOffset, 32, cfaOffset|29, 4, cfaOffset|30, 3)
	var sec asm
	sec.u32(uint32(cie.Len()))
	sec.Write(cie.Bytes())
	sec.u32(uint32(fde.Len()))
	sec.Write(fde.Bytes())
	tab, err := NewTable(Section{Format: DebugFrame, Data: sec.Bytes(), PtrSize: 8}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tab.Lookup(0x400004)
	if err != nil {
		t.Fatal(err)
	}
	row, err := f.RowAt(0x400004, ARM64)
	if err != nil {
		t.Fatal(err)
	}
	// Code alignment 4: advance_loc 1 is 4 bytes.
	if row.CFA.String() != "r31+32" || row.Rule(29).String() != "offset(-32)" || row.Rule(30).String() != "offset(-24)" || row.RAReg != 30 {
		t.Errorf("CFA %s, x29 %s, x30 %s, RA r%d", row.CFA, row.Rule(29), row.Rule(30), row.RAReg)
	}
	row, _ = f.RowAt(0x400003, ARM64)
	if row.CFA.String() != "r31+0" {
		t.Errorf("before the advance: CFA %s", row.CFA)
	}
}

func TestNegateRAState(t *testing.T) {
	var cie asm
	cie.u32(0xffffffff)
	cie.u8(1)
	cie.u8(0)
	cie.uleb(4)
	cie.sleb(-8)
	cie.u8(30)
	cie.u8(cfaDefCFA, 31, 0)
	var fde asm
	fde.u32(0)
	fde.u64(0x1000)
	fde.u64(0x40)
	fde.u8(cfaGNUWindowSave, cfaAdvanceLoc|4, cfaGNUWindowSave)
	var sec asm
	sec.u32(uint32(cie.Len()))
	sec.Write(cie.Bytes())
	sec.u32(uint32(fde.Len()))
	sec.Write(fde.Bytes())
	tab, err := NewTable(Section{Format: DebugFrame, Data: sec.Bytes(), PtrSize: 8}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tab.Lookup(0x1000)
	if err != nil {
		t.Fatal(err)
	}
	for pc, want := range map[uint64]bool{0x1000: true, 0x100c: true, 0x1010: false} {
		row, err := f.RowAt(pc, ARM64)
		if err != nil || row.RASigned != want {
			t.Errorf("0x%x: signed %v, %v; want %v", pc, row != nil && row.RASigned, err, want)
		}
	}
}

func TestMalformedSections(t *testing.T) {
	good := oneFDE(nil)
	cases := []struct {
		name string
		data []byte
	}{
		{"length past the end", []byte{0xff, 0, 0, 0, 0, 0, 0, 0}},
		{"short length", []byte{1, 0}},
		{"64-bit length past the end", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0}},
		{"FDE before its section", []byte{8, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0}},
		{"FDE pointing at an FDE", cat(good[:len(good)-4], ehFDE(len(good)-4, len(oneFDE(nil))-4-len(ehFDE(0, 0, 0, 0, 0, nil)), secAddr, 0x3000, 1, nil))},
		{"CIE version 2", func() []byte { b := bytes.Clone(good); b[8] = 2; return b }()},
		{"cut inside the CIE", good[:10]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewTable(Section{Format: EHFrame, Data: c.data, Addr: secAddr, PtrSize: 8}, nil, 0)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v, want ErrMalformed", err)
			}
		})
	}
}

type testEnv struct {
	regs map[uint64]uint64
	mem  map[uint64]uint64
}

func (e testEnv) Reg(n uint64) (uint64, error) {
	if v, ok := e.regs[n]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("register %d unknown", n)
}

func (e testEnv) Mem(addr uint64, size int) (uint64, error) {
	if v, ok := e.mem[addr]; ok {
		return v & (^uint64(0) >> (64 - 8*size)), nil
	}
	return 0, fmt.Errorf("no memory at 0x%x", addr)
}

func TestEval(t *testing.T) {
	// binutils' CFA rule for x86_64 PLT entries: rsp+8, plus 8 once the entry has pushed its
	// relocation index (the second half of each 16-byte entry).
	plt := []byte{opBreg0 + 7, 8, opBreg0 + 16, 0, opLit0 + 15, opAnd, opLit0 + 11, opGe, opLit0 + 3, opShl, opPlus}
	env := func(rip uint64) testEnv {
		return testEnv{regs: map[uint64]uint64{7: 0x7ffc0000, 16: rip, 6: 0x7ffc0100}, mem: map[uint64]uint64{0x7ffc00a0: 0x7ffc0400, 0x7ffc00f8: 0xdeadbeefcafe}}
	}
	cases := []struct {
		name    string
		expr    []byte
		env     testEnv
		initial []uint64
		want    uint64
		wantErr error
	}{
		{name: "plt first half", expr: plt, env: env(0x401020), want: 0x7ffc0008},
		{name: "plt at 10", expr: plt, env: env(0x40102a), want: 0x7ffc0008},
		{name: "plt at 11", expr: plt, env: env(0x40102b), want: 0x7ffc0010},
		{name: "plt at 15", expr: plt, env: env(0x40102f), want: 0x7ffc0010},
		{name: "signal frame CFA", expr: []byte{opBreg0 + 7, 0xa0, 0x01, opDeref}, env: env(0), want: 0x7ffc0400},
		{name: "realigned frame", expr: []byte{opBreg0 + 6, 0x78, opDeref}, env: env(0), want: 0xdeadbeefcafe},
		{name: "deref_size 4", expr: []byte{opBreg0 + 6, 0x78, opDerefSize, 4}, env: env(0), want: 0xbeefcafe},
		{name: "initial value (CFA) plus", expr: []byte{opLit0 + 16, opPlus}, initial: []uint64{0x1000}, want: 0x1010},
		{name: "bregx", expr: cat([]byte{opBregx}, uleb(7), sleb(-16)), env: env(0), want: 0x7ffbfff0},
		{name: "constants", expr: []byte{opConst1s, 0xff, opConst2u, 0x34, 0x12, opPlus}, want: 0x1233},
		{name: "const4s const8u minus", expr: cat([]byte{opConst8u}, binary.LittleEndian.AppendUint64(nil, 100), []byte{opConst4s}, binary.LittleEndian.AppendUint32(nil, uint32(0xfffffff6)), []byte{opMinus}), want: 110},
		{name: "constu consts mul", expr: cat([]byte{opConstu}, uleb(300), []byte{opConsts}, sleb(-2), []byte{opMul}), want: uint64(0xfffffffffffffda8)},
		{name: "dup over swap rot drop", expr: []byte{opLit0 + 1, opLit0 + 2, opOver, opSwap, opRot, opDrop, opDrop}, want: 2},
		{name: "pick", expr: []byte{opLit0 + 5, opLit0 + 6, opLit0 + 7, opPick, 2}, want: 5},
		{name: "div mod neg abs", expr: []byte{opLit0 + 7, opNeg, opLit0 + 2, opDiv, opAbs, opLit0 + 2, opMod}, want: 1},
		{name: "shr shra xor or not", expr: []byte{opLit0 + 16, opLit0 + 2, opShr, opLit0 + 1, opXor, opLit0 + 8, opOr, opNot, opLit0 + 1, opShra}, want: ^uint64(13)>>1 | 1<<63},
		{name: "plus_uconst", expr: cat([]byte{opLit0 + 1, opPlusUconst}, uleb(1000)), want: 1001},
		{name: "comparisons", expr: []byte{opLit0 + 1, opLit0 + 2, opLt, opLit0 + 3, opLit0 + 3, opLe, opPlus, opLit0 + 4, opLit0 + 3, opGt, opPlus, opLit0 + 1, opLit0 + 1, opEq, opPlus, opLit0 + 1, opLit0 + 2, opNe, opPlus}, want: 5},
		{name: "skip", expr: []byte{opLit0 + 1, opSkip, 1, 0, opLit0 + 2}, want: 1},
		{name: "bra taken", expr: []byte{opLit0 + 9, opLit0 + 1, opBra, 1, 0, opLit0 + 2}, want: 9},
		{name: "bra not taken", expr: []byte{opLit0 + 9, opLit0 + 0, opBra, 1, 0, opLit0 + 2}, want: 2},
		{name: "stack_value and nop", expr: []byte{opLit0 + 3, opNop, opStackValue}, want: 3},
		{name: "addr", expr: cat([]byte{opAddr}, binary.LittleEndian.AppendUint64(nil, 0x1234)), want: 0x1234},
		{name: "unknown register", expr: []byte{opBreg0 + 3, 0}, env: env(0), wantErr: errSentinel},
		{name: "memory outside the copy", expr: []byte{opLit0 + 1, opDeref}, env: env(0), wantErr: errSentinel},
		{name: "fbreg", expr: []byte{opFbreg, 0}, wantErr: ErrUnsupported},
		{name: "reg0", expr: []byte{opReg0}, wantErr: ErrUnsupported},
		{name: "call_frame_cfa", expr: []byte{opCallCFA}, wantErr: ErrUnsupported},
		{name: "GNU entry value", expr: []byte{0xf3, 1, 0x50}, wantErr: ErrUnsupported},
		{name: "empty", expr: nil, wantErr: ErrMalformed},
		{name: "pop empty", expr: []byte{opPlus}, wantErr: ErrMalformed},
		{name: "div by zero", expr: []byte{opLit0 + 1, opLit0, opDiv}, wantErr: ErrMalformed},
		{name: "mod by zero", expr: []byte{opLit0 + 1, opLit0, opMod}, wantErr: ErrMalformed},
		{name: "skip out", expr: []byte{opSkip, 0x10, 0}, wantErr: ErrMalformed},
		{name: "infinite loop", expr: []byte{opSkip, 0xfd, 0xff}, wantErr: ErrMalformed},
		{name: "truncated const", expr: []byte{opConst4u, 1}, wantErr: ErrMalformed},
		{name: "deref_size 3", expr: []byte{opLit0, opDerefSize, 3}, wantErr: ErrMalformed},
		{name: "pick too deep", expr: []byte{opLit0, opPick, 1}, wantErr: ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.env.regs == nil {
				c.env = testEnv{}
			}
			got, err := Eval(c.expr, c.env, 8, binary.LittleEndian, c.initial...)
			if c.wantErr != nil {
				if err == nil {
					t.Fatalf("got 0x%x, want an error", got)
				}
				if c.wantErr != errSentinel && !errors.Is(err, c.wantErr) {
					t.Fatalf("error %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("0x%x, %v; want 0x%x", got, err, c.want)
			}
		})
	}
}

// errSentinel marks cases that must fail with the environment's own error.
var errSentinel = errors.New("any error")

// TestRealObjects reads the CFI of the system's C library and C++ runtime: the binary search
// through .eh_frame_hdr and a full index of .eh_frame must find the same FDE for every start
// address, and every FDE's rows must decode at its first and last address.
func TestRealObjects(t *testing.T) {
	for _, path := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/bin/node"} {
		t.Run(path, func(t *testing.T) {
			f, err := elf.Open(path)
			if err != nil {
				if os.IsNotExist(err) {
					t.Skipf("%s not installed", path)
				}
				t.Fatal(err)
			}
			defer f.Close()
			eh, hdr := f.Section(".eh_frame"), f.Section(".eh_frame_hdr")
			ehData, err := eh.Data()
			if err != nil {
				t.Fatal(err)
			}
			hdrData, err := hdr.Data()
			if err != nil {
				t.Fatal(err)
			}
			sec := Section{Format: EHFrame, Data: ehData, Addr: eh.Addr, PtrSize: 8}
			withHdr, err := NewTable(sec, hdrData, hdr.Addr)
			if err != nil || withHdr.hdr == nil {
				t.Fatalf("with header: %v", err)
			}
			indexed, err := NewTable(sec, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if withHdr.Len() != indexed.Len() {
				t.Fatalf("%d FDEs in .eh_frame_hdr, %d in .eh_frame", withHdr.Len(), indexed.Len())
			}
			for _, e := range indexed.index {
				for _, pc := range []uint64{e.start, e.end - 1} {
					f, err := withHdr.Lookup(pc)
					if err != nil {
						t.Fatalf("0x%x: %v", pc, err)
					}
					if f.Offset != e.off {
						// Overlapping FDEs: both tables must still agree on a covering one.
						g, _ := indexed.Lookup(pc)
						if g == nil || g.Offset != f.Offset {
							t.Fatalf("0x%x: FDE at %d via header, %d via index", pc, f.Offset, e.off)
						}
					}
					if _, err := f.RowAt(pc, AMD64); err != nil {
						t.Fatalf("0x%x: %v", pc, err)
					}
				}
			}
			t.Logf("%d FDEs", indexed.Len())
		})
	}
}
