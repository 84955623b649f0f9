package cfi

import "fmt"

// MaxReg is one past the highest register number whose rule a Row keeps. It covers the general
// purpose registers and the return address column of x86_64 (0-16) and arm64 (x0-x30, sp = 31,
// pc = 32, RA_SIGN_STATE = 34). Rules for other registers (vector and floating point registers,
// which arm64's CFI saves too) are decoded and dropped: unwinding never needs them.
const MaxReg = 35

// RuleKind says how a register of the caller, or the CFA, is found.
type RuleKind uint8

const (
	// Unspecified: the CFI says nothing. For a callee-saved register this means it was not
	// touched, i.e. the same value (what GCC and LLVM assume, and what perf and libunwind do).
	Unspecified RuleKind = iota
	// Undefined: the value cannot be recovered. For the return address column this marks the
	// outermost frame (glibc's _start and thread start routines say so).
	Undefined
	SameValue
	// Offset: saved in memory at CFA+Offset.
	Offset
	// ValOffset: the value is CFA+Offset.
	ValOffset
	// Register: the value is in register Reg.
	Register
	// Expression: saved in memory at the address the expression computes (CFA pushed first).
	Expression
	// ValExpression: the value is what the expression computes (CFA pushed first).
	ValExpression
	// CFARegOffset (CFA rule only): CFA = Reg + Offset.
	CFARegOffset
	// CFAExpression (CFA rule only): CFA is what the expression computes.
	CFAExpression
)

var ruleNames = [...]string{"unspecified", "undefined", "same", "offset", "val_offset", "register", "expression", "val_expression", "cfa", "cfa_expression"}

func (k RuleKind) String() string {
	if int(k) < len(ruleNames) {
		return ruleNames[k]
	}
	return fmt.Sprintf("rule(%d)", k)
}

// Rule is one cell of the table.
type Rule struct {
	Kind   RuleKind
	Reg    uint64
	Offset int64
	Expr   []byte
}

func (r Rule) String() string {
	switch r.Kind {
	case Offset, ValOffset:
		return fmt.Sprintf("%s(%d)", r.Kind, r.Offset)
	case Register:
		return fmt.Sprintf("register(r%d)", r.Reg)
	case CFARegOffset:
		return fmt.Sprintf("r%d%+d", r.Reg, r.Offset)
	case Expression, ValExpression, CFAExpression:
		return fmt.Sprintf("%s(% x)", r.Kind, r.Expr)
	}
	return r.Kind.String()
}

// Row is the table's row for one address: how to compute the CFA (the caller's stack pointer
// before the call) and each register of the caller.
type Row struct {
	CFA  Rule
	Regs [MaxReg]Rule
	// RAReg is the return address column (16 on x86_64, 30 = x30/lr on arm64).
	RAReg uint64
	// SignalFrame is set for signal trampolines ('S'): their caller's PC is where the signal
	// interrupted, not a return address, so it is not moved back into the call instruction.
	SignalFrame bool
	// RASigned tracks AArch64's DW_CFA_AARCH64_negate_ra_state: the return address is signed
	// (pointer authentication) and its PAC bits must be stripped.
	RASigned bool
	// Start and End are the FDE's range.
	Start, End uint64
}

// Rule returns the rule of register reg (Unspecified for registers the row does not keep).
func (row *Row) Rule(reg uint64) Rule {
	if reg < MaxReg {
		return row.Regs[reg]
	}
	return Rule{}
}

// DWARF call frame instructions (DWARF 5, 6.4.2, and the GNU extensions GCC emits).
const (
	cfaAdvanceLoc        = 0x40 // high 2 bits
	cfaOffset            = 0x80
	cfaRestore           = 0xc0
	cfaNop               = 0x00
	cfaSetLoc            = 0x01
	cfaAdvanceLoc1       = 0x02
	cfaAdvanceLoc2       = 0x03
	cfaAdvanceLoc4       = 0x04
	cfaOffsetExtended    = 0x05
	cfaRestoreExtended   = 0x06
	cfaUndefined         = 0x07
	cfaSameValue         = 0x08
	cfaRegister          = 0x09
	cfaRememberState     = 0x0a
	cfaRestoreState      = 0x0b
	cfaDefCFA            = 0x0c
	cfaDefCFARegister    = 0x0d
	cfaDefCFAOffset      = 0x0e
	cfaDefCFAExpression  = 0x0f
	cfaExpression        = 0x10
	cfaOffsetExtendedSF  = 0x11
	cfaDefCFASF          = 0x12
	cfaDefCFAOffsetSF    = 0x13
	cfaValOffset         = 0x14
	cfaValOffsetSF       = 0x15
	cfaValExpression     = 0x16
	cfaGNUWindowSave     = 0x2d // AArch64: DW_CFA_AARCH64_negate_ra_state
	cfaGNUArgsSize       = 0x2e
	cfaGNUNegOffsetExtSF = 0x2f
)

// maxStateDepth bounds DW_CFA_remember_state nesting (compilers nest one or two deep).
const maxStateDepth = 64

// Arch tells the few instruction meanings that depend on the architecture.
type Arch int

const (
	AMD64 Arch = iota
	ARM64
)

// RowAt runs the CIE's initial instructions and the FDE's instructions up to pc and returns the
// row in force at pc, which must be within the FDE's range.
func (f *FDE) RowAt(pc uint64, arch Arch) (*Row, error) {
	if pc < f.Start || pc >= f.End {
		return nil, fmt.Errorf("cfi: 0x%x outside the FDE's range [0x%x, 0x%x)", pc, f.Start, f.End)
	}
	row := &Row{RAReg: f.CIE.RAReg, SignalFrame: f.CIE.SignalFrame, Start: f.Start, End: f.End}
	m := machine{fde: f, row: row, loc: f.Start, pc: pc, arch: arch}
	if err := m.run(f.CIE.Initial, true); err != nil {
		return nil, fmt.Errorf("CIE initial instructions: %w", err)
	}
	m.initial = *row
	if err := m.run(f.Instructions, false); err != nil {
		return nil, fmt.Errorf("FDE at %d: %w", f.Offset, err)
	}
	return row, nil
}

type machine struct {
	fde     *FDE
	row     *Row
	initial Row
	stack   []Row
	loc, pc uint64
	arch    Arch
}

func (m *machine) setReg(reg uint64, r Rule) {
	if reg < MaxReg {
		m.row.Regs[reg] = r
	}
}

func (m *machine) restore(reg uint64) {
	if reg < MaxReg {
		m.row.Regs[reg] = m.initial.Regs[reg]
	}
}

// advance moves the location by delta code units and reports whether pc is still at or past it,
// i.e. whether the following instructions still apply.
func (m *machine) advance(delta uint64) bool {
	m.loc += delta * m.fde.CIE.CodeAlign
	return m.loc <= m.pc
}

func (m *machine) run(ins []byte, inCIE bool) error {
	c := m.fde.CIE
	r := reader{b: ins, order: c.order}
	for r.left() > 0 {
		op := r.u8()
		switch op & 0xc0 {
		case cfaAdvanceLoc:
			if !m.advance(uint64(op & 0x3f)) {
				return nil
			}
			continue
		case cfaOffset:
			m.setReg(uint64(op&0x3f), Rule{Kind: Offset, Offset: int64(r.uleb()) * c.DataAlign})
			continue
		case cfaRestore:
			if inCIE {
				return malformed("DW_CFA_restore in a CIE")
			}
			m.restore(uint64(op & 0x3f))
			continue
		}
		switch op {
		case cfaNop:
		case cfaSetLoc:
			b := &bases{sectionAddr: 0}
			enc := c.FDEEncoding
			if enc&0x70 == pePcrel {
				// A pc-relative DW_CFA_set_loc would need the instruction's own address; no
				// toolchain emits one.
				return malformed("pc-relative DW_CFA_set_loc")
			}
			loc, err := r.pointer(enc, c.addrSize, b, false)
			if err != nil {
				return err
			}
			if loc < m.loc {
				return malformed("DW_CFA_set_loc moves backwards")
			}
			m.loc = loc
			if m.loc > m.pc {
				return nil
			}
		case cfaAdvanceLoc1:
			if !m.advance(uint64(r.u8())) {
				return r.err
			}
		case cfaAdvanceLoc2:
			if !m.advance(uint64(r.u16())) {
				return r.err
			}
		case cfaAdvanceLoc4:
			if !m.advance(uint64(r.u32())) {
				return r.err
			}
		case cfaOffsetExtended:
			reg, off := r.uleb(), r.uleb()
			m.setReg(reg, Rule{Kind: Offset, Offset: int64(off) * c.DataAlign})
		case cfaRestoreExtended:
			if inCIE {
				return malformed("DW_CFA_restore_extended in a CIE")
			}
			m.restore(r.uleb())
		case cfaUndefined:
			m.setReg(r.uleb(), Rule{Kind: Undefined})
		case cfaSameValue:
			m.setReg(r.uleb(), Rule{Kind: SameValue})
		case cfaRegister:
			reg, reg2 := r.uleb(), r.uleb()
			m.setReg(reg, Rule{Kind: Register, Reg: reg2})
		case cfaRememberState:
			if len(m.stack) >= maxStateDepth {
				return malformed("DW_CFA_remember_state nested more than %d deep", maxStateDepth)
			}
			m.stack = append(m.stack, *m.row)
		case cfaRestoreState:
			if len(m.stack) == 0 {
				return malformed("DW_CFA_restore_state without remember_state")
			}
			// The CFA rule is restored too (DWARF 5 clarified this; GCC relies on it).
			top := m.stack[len(m.stack)-1]
			m.stack = m.stack[:len(m.stack)-1]
			top.SignalFrame, top.Start, top.End = m.row.SignalFrame, m.row.Start, m.row.End
			*m.row = top
		case cfaDefCFA:
			reg, off := r.uleb(), r.uleb()
			m.row.CFA = Rule{Kind: CFARegOffset, Reg: reg, Offset: int64(off)}
		case cfaDefCFASF:
			reg, off := r.uleb(), r.sleb()
			m.row.CFA = Rule{Kind: CFARegOffset, Reg: reg, Offset: off * c.DataAlign}
		case cfaDefCFARegister:
			reg := r.uleb()
			if m.row.CFA.Kind != CFARegOffset {
				return malformed("DW_CFA_def_cfa_register without a register CFA rule")
			}
			m.row.CFA.Reg = reg
		case cfaDefCFAOffset:
			off := r.uleb()
			if m.row.CFA.Kind != CFARegOffset {
				return malformed("DW_CFA_def_cfa_offset without a register CFA rule")
			}
			m.row.CFA.Offset = int64(off)
		case cfaDefCFAOffsetSF:
			off := r.sleb()
			if m.row.CFA.Kind != CFARegOffset {
				return malformed("DW_CFA_def_cfa_offset_sf without a register CFA rule")
			}
			m.row.CFA.Offset = off * c.DataAlign
		case cfaDefCFAExpression:
			n := r.uleb()
			if n > uint64(r.left()) {
				return malformed("DW_CFA_def_cfa_expression longer than its FDE")
			}
			m.row.CFA = Rule{Kind: CFAExpression, Expr: r.bytes(int(n))}
		case cfaExpression, cfaValExpression:
			reg, n := r.uleb(), r.uleb()
			if n > uint64(r.left()) {
				return malformed("DW_CFA_expression longer than its FDE")
			}
			kind := Expression
			if op == cfaValExpression {
				kind = ValExpression
			}
			m.setReg(reg, Rule{Kind: kind, Expr: r.bytes(int(n))})
		case cfaOffsetExtendedSF:
			reg, off := r.uleb(), r.sleb()
			m.setReg(reg, Rule{Kind: Offset, Offset: off * c.DataAlign})
		case cfaValOffset:
			reg, off := r.uleb(), r.uleb()
			m.setReg(reg, Rule{Kind: ValOffset, Offset: int64(off) * c.DataAlign})
		case cfaValOffsetSF:
			reg, off := r.uleb(), r.sleb()
			m.setReg(reg, Rule{Kind: ValOffset, Offset: off * c.DataAlign})
		case cfaGNUArgsSize:
			r.uleb() // the size of outgoing arguments: only exception handling cares
		case cfaGNUNegOffsetExtSF:
			reg, off := r.uleb(), r.uleb()
			m.setReg(reg, Rule{Kind: Offset, Offset: -int64(off) * c.DataAlign})
		case cfaGNUWindowSave:
			if m.arch != ARM64 {
				// SPARC's register window save: meaningless on the architectures supported.
				return malformed("DW_CFA_GNU_window_save outside AArch64")
			}
			m.row.RASigned = !m.row.RASigned
		default:
			return malformed("unknown call frame instruction 0x%02x", op)
		}
		if r.err != nil {
			return r.err
		}
	}
	return r.err
}
