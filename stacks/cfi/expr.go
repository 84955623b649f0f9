package cfi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrUnsupported is wrapped by the errors of expressions that use an operation this evaluator
// does not implement (one that needs debug information, such as DW_OP_fbreg, or TLS, or typed
// stack values). An unwinder must stop there: the value is unknown, not zero.
var ErrUnsupported = errors.New("unsupported DWARF expression operation")

// Env is what an expression may read: the registers of the frame being unwound and memory.
type Env interface {
	// Reg returns the value of DWARF register n, or an error when it is not known.
	Reg(n uint64) (uint64, error)
	// Mem reads size (1, 2, 4 or 8) bytes at addr, little- or big-endian as the target is.
	Mem(addr uint64, size int) (uint64, error)
}

// DWARF expression operations (DWARF 5, 2.5): those that CFI uses. Expressions in CFI compute
// addresses from registers and stack memory; the ones compilers and glibc emit are register plus
// offset (stack realignment, signal frames) and the arithmetic of the PLT's CFA rule.
const (
	opAddr       = 0x03
	opDeref      = 0x06
	opConst1u    = 0x08
	opConst1s    = 0x09
	opConst2u    = 0x0a
	opConst2s    = 0x0b
	opConst4u    = 0x0c
	opConst4s    = 0x0d
	opConst8u    = 0x0e
	opConst8s    = 0x0f
	opConstu     = 0x10
	opConsts     = 0x11
	opDup        = 0x12
	opDrop       = 0x13
	opOver       = 0x14
	opPick       = 0x15
	opSwap       = 0x16
	opRot        = 0x17
	opXderef     = 0x18
	opAbs        = 0x19
	opAnd        = 0x1a
	opDiv        = 0x1b
	opMinus      = 0x1c
	opMod        = 0x1d
	opMul        = 0x1e
	opNeg        = 0x1f
	opNot        = 0x20
	opOr         = 0x21
	opPlus       = 0x22
	opPlusUconst = 0x23
	opShl        = 0x24
	opShr        = 0x25
	opShra       = 0x26
	opXor        = 0x27
	opBra        = 0x28
	opEq         = 0x29
	opGe         = 0x2a
	opGt         = 0x2b
	opLe         = 0x2c
	opLt         = 0x2d
	opNe         = 0x2e
	opSkip       = 0x2f
	opLit0       = 0x30
	opLit31      = 0x4f
	opReg0       = 0x50
	opReg31      = 0x6f
	opBreg0      = 0x70
	opBreg31     = 0x8f
	opRegx       = 0x90
	opFbreg      = 0x91
	opBregx      = 0x92
	opDerefSize  = 0x94
	opNop        = 0x96
	opCallCFA    = 0x9c
	opStackValue = 0x9f
)

const (
	maxExprSteps = 10000 // bounds loops made with DW_OP_bra/DW_OP_skip
	maxExprStack = 256
)

// Eval evaluates a DWARF expression from CFI. initial is pushed first (the CFA, for register
// rules; nothing for the CFA rule). ptrSize is the target's address size, order its byte order.
// The result is the value on top of the stack; the caller knows from the rule whether that is an
// address to read from or the value itself.
func Eval(expr []byte, env Env, ptrSize int, order binary.ByteOrder, initial ...uint64) (uint64, error) {
	if order == nil {
		order = binary.LittleEndian
	}
	stack := make([]uint64, 0, 8)
	stack = append(stack, initial...)
	mask := ^uint64(0)
	if ptrSize == 4 {
		mask = 0xffffffff
	}
	r := reader{b: expr, order: order}
	pop := func() (uint64, error) {
		if len(stack) == 0 {
			return 0, malformed("DWARF expression pops an empty stack")
		}
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		return v, nil
	}
	pop2 := func() (a, b uint64, err error) {
		// b is the top, a the entry below it: "a OP b".
		if len(stack) < 2 {
			return 0, 0, malformed("DWARF expression needs two operands")
		}
		a, b = stack[len(stack)-2], stack[len(stack)-1]
		stack = stack[:len(stack)-2]
		return a, b, nil
	}
	push := func(v uint64) error {
		if len(stack) >= maxExprStack {
			return malformed("DWARF expression stack deeper than %d", maxExprStack)
		}
		stack = append(stack, v&mask)
		return nil
	}
	bool2u := func(b bool) uint64 {
		if b {
			return 1
		}
		return 0
	}
	for steps := 0; r.left() > 0; steps++ {
		if steps >= maxExprSteps {
			return 0, malformed("DWARF expression runs more than %d steps", maxExprSteps)
		}
		op := r.u8()
		var err error
		switch {
		case op >= opLit0 && op <= opLit31:
			err = push(uint64(op - opLit0))
		case op >= opReg0 && op <= opReg31:
			// A register location describes a register, not a value; CFI never uses it.
			return 0, fmt.Errorf("%w: DW_OP_reg%d", ErrUnsupported, op-opReg0)
		case op >= opBreg0 && op <= opBreg31:
			off := r.sleb()
			var v uint64
			if v, err = env.Reg(uint64(op - opBreg0)); err == nil {
				err = push(v + uint64(off))
			}
		default:
			switch op {
			case opAddr:
				if ptrSize == 4 {
					err = push(uint64(r.u32()))
				} else {
					err = push(r.u64())
				}
			case opDeref, opDerefSize:
				size := ptrSize
				if op == opDerefSize {
					size = int(r.u8())
				}
				if size != 1 && size != 2 && size != 4 && size != 8 {
					return 0, malformed("DW_OP_deref_size %d", size)
				}
				var a, v uint64
				if a, err = pop(); err == nil {
					if v, err = env.Mem(a, size); err == nil {
						err = push(v)
					}
				}
			case opConst1u:
				err = push(uint64(r.u8()))
			case opConst1s:
				err = push(uint64(int64(int8(r.u8()))))
			case opConst2u:
				err = push(uint64(r.u16()))
			case opConst2s:
				err = push(uint64(int64(int16(r.u16()))))
			case opConst4u:
				err = push(uint64(r.u32()))
			case opConst4s:
				err = push(uint64(int64(int32(r.u32()))))
			case opConst8u, opConst8s:
				err = push(r.u64())
			case opConstu:
				err = push(r.uleb())
			case opConsts:
				err = push(uint64(r.sleb()))
			case opDup:
				if len(stack) == 0 {
					return 0, malformed("DW_OP_dup on an empty stack")
				}
				err = push(stack[len(stack)-1])
			case opDrop:
				_, err = pop()
			case opOver:
				if len(stack) < 2 {
					return 0, malformed("DW_OP_over needs two entries")
				}
				err = push(stack[len(stack)-2])
			case opPick:
				i := int(r.u8())
				if i >= len(stack) {
					return 0, malformed("DW_OP_pick %d beyond the stack", i)
				}
				err = push(stack[len(stack)-1-i])
			case opSwap:
				if len(stack) < 2 {
					return 0, malformed("DW_OP_swap needs two entries")
				}
				n := len(stack)
				stack[n-1], stack[n-2] = stack[n-2], stack[n-1]
			case opRot:
				if len(stack) < 3 {
					return 0, malformed("DW_OP_rot needs three entries")
				}
				n := len(stack)
				stack[n-1], stack[n-2], stack[n-3] = stack[n-2], stack[n-3], stack[n-1]
			case opAbs, opNeg, opNot:
				var v uint64
				if v, err = pop(); err == nil {
					switch op {
					case opAbs:
						if int64(v) < 0 {
							v = -v
						}
					case opNeg:
						v = -v
					case opNot:
						v = ^v
					}
					err = push(v)
				}
			case opPlusUconst:
				n := r.uleb()
				var v uint64
				if v, err = pop(); err == nil {
					err = push(v + n)
				}
			case opAnd, opDiv, opMinus, opMod, opMul, opOr, opPlus, opShl, opShr, opShra, opXor,
				opEq, opGe, opGt, opLe, opLt, opNe:
				var a, b uint64
				if a, b, err = pop2(); err != nil {
					break
				}
				var v uint64
				// Comparisons and division are signed (DWARF's generic type is signed for
				// them in practice: GCC's PLT expression compares small constants only).
				sa, sb := int64(a), int64(b)
				if ptrSize == 4 {
					sa, sb = int64(int32(a)), int64(int32(b))
				}
				switch op {
				case opAnd:
					v = a & b
				case opDiv:
					if sb == 0 {
						return 0, malformed("DW_OP_div by zero")
					}
					if sb == -1 {
						v = uint64(-sa) // avoids the one overflowing case, MinInt64 / -1
					} else {
						v = uint64(sa / sb)
					}
				case opMinus:
					v = a - b
				case opMod:
					if b == 0 {
						return 0, malformed("DW_OP_mod by zero")
					}
					v = a % b
				case opMul:
					v = a * b
				case opOr:
					v = a | b
				case opPlus:
					v = a + b
				case opShl:
					if b < 64 {
						v = a << b
					}
				case opShr:
					if b < 64 {
						v = a >> b
					}
				case opShra:
					if b < 64 {
						v = uint64(sa >> b)
					} else if sa < 0 {
						v = ^uint64(0)
					}
				case opXor:
					v = a ^ b
				case opEq:
					v = bool2u(sa == sb)
				case opGe:
					v = bool2u(sa >= sb)
				case opGt:
					v = bool2u(sa > sb)
				case opLe:
					v = bool2u(sa <= sb)
				case opLt:
					v = bool2u(sa < sb)
				case opNe:
					v = bool2u(sa != sb)
				}
				err = push(v)
			case opSkip, opBra:
				off := int(int16(r.u16()))
				if r.err != nil {
					return 0, r.err
				}
				jump := true
				if op == opBra {
					var v uint64
					if v, err = pop(); err != nil {
						break
					}
					jump = v != 0
				}
				if jump {
					to := r.off + off
					if to < 0 || to > len(expr) {
						return 0, malformed("DW_OP_%s to %d outside the expression", map[bool]string{true: "skip", false: "bra"}[op == opSkip], to)
					}
					r.off = to
				}
			case opRegx:
				return 0, fmt.Errorf("%w: DW_OP_regx", ErrUnsupported)
			case opBregx:
				reg, off := r.uleb(), r.sleb()
				var v uint64
				if v, err = env.Reg(reg); err == nil {
					err = push(v + uint64(off))
				}
			case opNop:
			case opStackValue:
				// Only meaningful in location descriptions; in CFI the rule already says
				// whether the result is a value.
			case opXderef:
				return 0, fmt.Errorf("%w: DW_OP_xderef", ErrUnsupported)
			case opFbreg:
				return 0, fmt.Errorf("%w: DW_OP_fbreg (needs debug information)", ErrUnsupported)
			case opCallCFA:
				return 0, fmt.Errorf("%w: DW_OP_call_frame_cfa", ErrUnsupported)
			default:
				return 0, fmt.Errorf("%w: 0x%02x", ErrUnsupported, op)
			}
		}
		if err != nil {
			return 0, err
		}
		if r.err != nil {
			return 0, r.err
		}
	}
	if len(stack) == 0 {
		return 0, malformed("DWARF expression leaves an empty stack")
	}
	return stack[len(stack)-1], nil
}
