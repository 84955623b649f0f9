package events

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"syscall"
	"unicode/utf8"
)

// WriteAll writes b; a closed pipe (| head) ends the command quietly, so it is no error.
func WriteAll(w io.Writer, b []byte) error {
	if _, err := w.Write(b); err != nil && !errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

const hexDigits = "0123456789abcdef"

// AppendJSONString quotes s for JSON: a command name can hold any byte.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
	}
	return append(b, '"')
}

// AppendHostPort appends a:port, an IPv6 address in brackets.
func AppendHostPort(b []byte, a netip.Addr, port uint16) []byte {
	if a.Is6() {
		b = append(b, '[')
		b = a.AppendTo(b)
		b = append(b, ']')
	} else {
		b = a.AppendTo(b)
	}
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(port), 10)
}

// Pad appends s, padded with spaces to width runes: right-aligned when width is positive,
// left-aligned when negative.
func Pad(b []byte, s string, width int) []byte {
	n := utf8.RuneCountInString(s)
	if width > 0 {
		for ; n < width; n++ {
			b = append(b, ' ')
		}
		return append(b, s...)
	}
	b = append(b, s...)
	for ; n < -width; n++ {
		b = append(b, ' ')
	}
	return b
}
