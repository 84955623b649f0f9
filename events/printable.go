package events

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Printable returns s as a terminal shows it safely: control characters, invisible formatting
// characters (a right-to-left override, say) and bytes that are not UTF-8 become Go escapes
// (\x1b, \n, \u202e, \xff), and a backslash becomes \\, so that the escapes are unambiguous, the
// way ls -b and %q show names. Process names and file paths are set by any process, and a name
// holding ESC ] ... BEL would retitle, recolour or rewrite the operator's terminal. JSON output
// is escaped by its own rules instead.
func Printable(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			return string(AppendPrintable(make([]byte, 0, len(s)+8), s))
		}
	}
	return s
}

// AppendPrintable appends Printable(s) to b.
func AppendPrintable(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		case r == '\\':
			b = append(b, '\\', '\\')
		case r >= utf8.RuneSelf && unicode.IsPrint(r):
			b = append(b, s[i:i+size]...)
		default:
			// \a \b \f \n \r \t \v, \x1b, \u202e: as strconv.Quote writes them, quotes aside.
			q := strconv.QuoteRune(r)
			b = append(b, q[1:len(q)-1]...)
		}
		i += size
	}
	return b
}
