// Package cfi decodes DWARF call frame information, the tables that say, for every instruction of
// a function, where its caller's registers and return address are: .eh_frame (with the binary
// search table of .eh_frame_hdr) and .debug_frame. It finds the entry (FDE) covering an address,
// runs its instructions up to that address to get the row of the table (the CFA rule and one rule
// per register), and evaluates the DWARF expressions those rules may hold.
//
// Everything here works on bytes of untrusted objects: malformed input yields errors, never
// panics, and every loop is bounded by the input's size or an explicit limit.
package cfi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed wraps every decoding error caused by bad input bytes.
var ErrMalformed = errors.New("malformed call frame information")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// reader is a cursor over a byte slice whose first error sticks: after a read past the end every
// further read returns zero, so decoders read a whole record and check err once.
type reader struct {
	b     []byte
	off   int
	order binary.ByteOrder
	err   error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = malformed("%s at offset %d runs past the end (%d bytes)", what, r.off, len(r.b))
	}
	r.off = len(r.b)
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) bytes(n int) []byte {
	if n < 0 || r.left() < n {
		r.fail(fmt.Sprintf("%d bytes", n))
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8() uint8 {
	p := r.bytes(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (r *reader) u16() uint16 {
	p := r.bytes(2)
	if p == nil {
		return 0
	}
	return r.order.Uint16(p)
}

func (r *reader) u32() uint32 {
	p := r.bytes(4)
	if p == nil {
		return 0
	}
	return r.order.Uint32(p)
}

func (r *reader) u64() uint64 {
	p := r.bytes(8)
	if p == nil {
		return 0
	}
	return r.order.Uint64(p)
}

// uleb reads an unsigned LEB128 number. Bits beyond 64 are dropped (as readelf does) rather than
// failing, but the encoding must end within the input.
func (r *reader) uleb() uint64 {
	var v uint64
	var shift uint
	for {
		if r.left() < 1 {
			r.fail("ULEB128")
			return 0
		}
		c := r.b[r.off]
		r.off++
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
		}
		shift += 7
		if c&0x80 == 0 {
			return v
		}
	}
}

// sleb reads a signed LEB128 number.
func (r *reader) sleb() int64 {
	var v int64
	var shift uint
	var c byte
	for {
		if r.left() < 1 {
			r.fail("SLEB128")
			return 0
		}
		c = r.b[r.off]
		r.off++
		if shift < 64 {
			v |= int64(c&0x7f) << shift
		}
		shift += 7
		if c&0x80 == 0 {
			break
		}
	}
	if shift < 64 && c&0x40 != 0 {
		v |= -1 << shift
	}
	return v
}

// cstring reads a NUL-terminated string.
func (r *reader) cstring() string {
	for i := r.off; i < len(r.b); i++ {
		if r.b[i] == 0 {
			s := string(r.b[r.off:i])
			r.off = i + 1
			return s
		}
	}
	r.fail("string")
	return ""
}

// Pointer encodings (DW_EH_PE_*), from the LSB's description of .eh_frame: the low nibble is the
// format, bits 4-6 how the value is applied, bit 7 an indirection.
const (
	peAbsptr  = 0x00
	peUleb128 = 0x01
	peUdata2  = 0x02
	peUdata4  = 0x03
	peUdata8  = 0x04
	peSigned  = 0x08
	peSleb128 = 0x09
	peSdata2  = 0x0a
	peSdata4  = 0x0b
	peSdata8  = 0x0c

	pePcrel    = 0x10
	peTextrel  = 0x20
	peDatarel  = 0x30
	peFuncrel  = 0x40
	peAligned  = 0x50
	peIndirect = 0x80
	peOmit     = 0xff
)

// bases are the addresses pointer encodings may be relative to.
type bases struct {
	// sectionAddr is the virtual address of the first byte of the data being read (for pcrel).
	sectionAddr uint64
	// dataAddr is the base for datarel (the start of .eh_frame_hdr for its own table).
	dataAddr uint64
	dataOK   bool
	// funcAddr is the FDE's initial location (funcrel, used in augmentation data only).
	funcAddr uint64
	funcOK   bool
}

// encodedSize is the size of a fixed-size encoding, or 0 for LEB128 and invalid formats.
func encodedSize(enc byte, ptrSize int) int {
	switch enc & 0x0f {
	case peAbsptr:
		return ptrSize
	case peUdata2, peSdata2:
		return 2
	case peUdata4, peSdata4:
		return 4
	case peUdata8, peSdata8:
		return 8
	}
	return 0
}

// pointer reads a value in encoding enc. With valueOnly the application bits are ignored, as for
// an FDE's address range, which is a length, not an address.
func (r *reader) pointer(enc byte, ptrSize int, b *bases, valueOnly bool) (uint64, error) {
	if enc == peOmit {
		return 0, malformed("omitted pointer where one is required")
	}
	if enc&0x70 == peAligned {
		// Aligned: the value is an absptr at the next ptrSize-aligned address.
		if ptrSize > 0 {
			pos := b.sectionAddr + uint64(r.off)
			if m := pos % uint64(ptrSize); m != 0 {
				r.bytes(int(uint64(ptrSize) - m))
			}
		}
		enc = peAbsptr
	}
	pos := b.sectionAddr + uint64(r.off)
	var v uint64
	switch enc & 0x0f {
	case peAbsptr:
		switch ptrSize {
		case 4:
			v = uint64(r.u32())
		case 8:
			v = r.u64()
		default:
			return 0, malformed("address size %d", ptrSize)
		}
	case peUleb128:
		v = r.uleb()
	case peUdata2:
		v = uint64(r.u16())
	case peUdata4:
		v = uint64(r.u32())
	case peUdata8:
		v = r.u64()
	case peSleb128:
		v = uint64(r.sleb())
	case peSdata2:
		v = uint64(int64(int16(r.u16())))
	case peSdata4:
		v = uint64(int64(int32(r.u32())))
	case peSdata8:
		v = r.u64()
	default:
		return 0, malformed("pointer encoding 0x%02x", enc)
	}
	if r.err != nil {
		return 0, r.err
	}
	if valueOnly {
		return v, nil
	}
	switch enc & 0x70 {
	case peAbsptr:
	case pePcrel:
		v += pos
	case peDatarel:
		if !b.dataOK {
			return 0, malformed("datarel pointer without a data base")
		}
		v += b.dataAddr
	case peFuncrel:
		if !b.funcOK {
			return 0, malformed("funcrel pointer outside an FDE")
		}
		v += b.funcAddr
	default:
		// textrel has no base on x86_64 or arm64 (no toolchain emits it there).
		return 0, malformed("pointer application 0x%02x not supported", enc&0x70)
	}
	if enc&peIndirect != 0 {
		// An indirect pointer points at the real value in the object's memory, which the .eh_frame
		// lookups never need (only personality routines use it, and those are skipped).
		return 0, malformed("indirect pointer")
	}
	if ptrSize == 4 {
		v &= 0xffffffff
	}
	return v, nil
}
