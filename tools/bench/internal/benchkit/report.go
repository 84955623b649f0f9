package benchkit

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"
)

// Median is the middle value of v, or the mean of the middle two; NaN for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MinMax is the least and the greatest of v; NaN for none.
func MinMax(v []float64) (lo, hi float64) {
	lo, hi = math.NaN(), math.NaN()
	for i, x := range v {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

// Thousands formats n with thousands separators.
func Thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// RSSMB converts kB (as /proc and rusage report memory) to MB of 10^6 bytes.
func RSSMB(kb int64) float64 { return float64(kb) * 1024 / 1e6 }

// Millis is d in milliseconds.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Verdict is the "met" column of a target: yes, or a bold no.
func Verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// WriteNotes ends a report with its notes as a list, if there are any.
func WriteNotes(w io.Writer, notes []string) {
	if len(notes) == 0 {
		return
	}
	fmt.Fprintf(w, "Notes:\n")
	for _, n := range notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	fmt.Fprintf(w, "\n")
}

// Emit prints a harness's report on stdout and, when out is set, writes it there too.
func Emit(report, out string) error {
	fmt.Print(report)
	if out == "" {
		return nil
	}
	return os.WriteFile(out, []byte(report), 0o644)
}

// CompareFlag adds the -compare NAME=PATH flag (repeatable) to fs, collected in
// order: another build measured in every round beside the main one, a step against the one
// before it.
func CompareFlag(fs *flag.FlagSet, usage string) *[][2]string {
	var compare [][2]string
	fs.Func("compare", usage+", NAME=PATH (repeatable)", func(v string) error {
		name, path, ok := strings.Cut(v, "=")
		if !ok || name == "" || path == "" {
			return errors.New("want NAME=PATH")
		}
		compare = append(compare, [2]string{name, path})
		return nil
	})
	return &compare
}
