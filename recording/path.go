package recording

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// OpenPath opens the recording at path for reading; "-" is standard input, copied first to a
// file that is already deleted, so that it can be read twice and leaves nothing behind if the
// reader dies. The caller closes the returned Closer.
func OpenPath(path string, budget Budget) (*File, io.Closer, error) {
	var f *os.File
	if path == "-" {
		dir, err := os.MkdirTemp("", "sockscope-stdin-*")
		if err != nil {
			return nil, nil, err
		}
		f, err = os.CreateTemp(dir, "recording")
		os.RemoveAll(dir) // the open file lives on
		if err != nil {
			return nil, nil, err
		}
		if _, err := io.Copy(f, os.Stdin); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("read standard input: %w", err)
		}
	} else {
		var err error
		if f, err = os.Open(path); err != nil {
			return nil, nil, err
		}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	rec, err := Open(f, st.Size(), budget)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return rec, f, nil
}

// ScanError names the file in an error of the format met while scanning it; other errors (the
// visitor's own, such as its output's) go through as they are.
func ScanError(path string, err error) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return err
}

// ClockWarning says, in one line, where the recording's clock stepped back furthest ("" when it
// never did): its times are read as written.
func (f *File) ClockWarning(path string) string {
	if len(f.ClockSteps) == 0 {
		return ""
	}
	s := slices.MaxFunc(f.ClockSteps, func(a, b ClockStep) int { return cmp.Compare(a.Back, b.Back) })
	return fmt.Sprintf("%s: the clock stepped back %s at offset %d (%s); times after it are as the clock read them",
		path, s.Back.Round(time.Millisecond), s.Offset, s.At.Format(time.RFC3339))
}

// LastSockets returns the last socket snapshot of each namespace in want (nil: every one) taken
// up to until (zero: the end), in the order the namespaces first appear; one snapshot per
// namespace is kept while scanning, not the file. first is when the recording's first snapshot
// was taken, whichever its namespace.
func (f *File) LastSockets(want map[uint32]bool, until time.Time) (last []*SocketSnapshot, first time.Time, err error) {
	byNetns := map[uint32]int{}
	err = f.Scan(Visitor{Sockets: func(s *SocketSnapshot) error {
		if first.IsZero() {
			first = s.Time
		}
		if want != nil && !want[s.Netns] || !until.IsZero() && s.Time.After(until) {
			return nil
		}
		c := *s
		if i, ok := byNetns[s.Netns]; ok {
			last[i] = &c
			return nil
		}
		byNetns[s.Netns] = len(last)
		last = append(last, &c)
		return nil
	}})
	return last, first, err
}
