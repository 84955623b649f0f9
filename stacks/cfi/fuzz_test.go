package cfi

import (
	"encoding/binary"
	"testing"
)

// FuzzTable feeds arbitrary bytes to the section decoder, the header search, the row machine and
// the expression evaluator: any input may fail, none may panic or hang.
func FuzzTable(f *testing.F) {
	f.Add(oneFDE([]byte{cfaAdvanceLoc | 1, cfaDefCFAOffset, 16, cfaOffset | 6, 2, cfaRememberState, cfaRestoreState}), []byte(nil), uint64(0x1001), false)
	f.Add(oneFDE([]byte{cfaDefCFAExpression, 3, opBreg0 + 7, 8, opDeref, cfaExpression, 6, 2, opBreg0 + 6, 0x78}), []byte{1, 0x1b, 3, 0x3b, 0, 0, 0, 0, 0, 0, 0, 0}, uint64(0x1000), false)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, []byte(nil), uint64(0), true)
	f.Fuzz(func(t *testing.T, data, hdr []byte, pc uint64, debug bool) {
		format := EHFrame
		if debug {
			format = DebugFrame
		}
		tab, err := NewTable(Section{Format: format, Data: data, Addr: secAddr, PtrSize: 8, Order: binary.LittleEndian}, hdr, secAddr-0x800)
		if err != nil {
			return
		}
		for _, p := range []uint64{pc, 0x1000, pc + 1} {
			fde, err := tab.Lookup(p)
			if err != nil {
				continue
			}
			row, err := fde.RowAt(p, AMD64)
			if err != nil {
				continue
			}
			env := testEnv{regs: map[uint64]uint64{6: 0x100, 7: 0x200, 16: p}, mem: map[uint64]uint64{0x200: 1, 0x208: 2}}
			if row.CFA.Kind == CFAExpression {
				Eval(row.CFA.Expr, env, 8, binary.LittleEndian)
			}
			for _, r := range row.Regs {
				if r.Kind == Expression || r.Kind == ValExpression {
					Eval(r.Expr, env, 8, binary.LittleEndian, 0x300)
				}
			}
		}
	})
}

// FuzzEval runs arbitrary expressions.
func FuzzEval(f *testing.F) {
	f.Add([]byte{opBreg0 + 7, 8, opBreg0 + 16, 0, opLit0 + 15, opAnd, opLit0 + 11, opGe, opLit0 + 3, opShl, opPlus}, false)
	f.Add([]byte{opLit0 + 9, opLit0 + 1, opBra, 1, 0, opLit0 + 2}, true)
	f.Fuzz(func(t *testing.T, expr []byte, small bool) {
		size := 8
		if small {
			size = 4
		}
		env := testEnv{regs: map[uint64]uint64{6: 0x100, 7: 0x200, 16: 0x401000}, mem: map[uint64]uint64{0x200: 1, 0x208: 2}}
		Eval(expr, env, size, binary.LittleEndian, 0x300)
	})
}
