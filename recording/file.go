package recording

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Sink is where `sockscope record` writes: a file (rotated at a size bound) or a stream. It is
// safe for concurrent use; each block is written whole.
//
// sockscope runs as root and the file's directory may be writable by others, so the sink never
// follows a symbolic link at the file or at its rotated copy: a link planted there would make
// root overwrite whatever it points to. Files are created with O_EXCL and O_NOFOLLOW, replaced
// (with overwrite) by renaming a new file over them, and rotated with a rename that replaces
// only the sink's own earlier copy.
type Sink struct {
	mu        sync.Mutex
	path      string // "" for a stream
	maxSize   int64
	overwrite bool
	f         *os.File
	w         *Writer
	sticky    map[BlockType][]byte // the latest meta, containers, facts and lost: repeated in a new file
	base      map[BlockType]func() ([]byte, error)
	fresh     bool      // nothing written since the file began (header, meta, sticky replay)
	start     time.Time // with its monotonic clock reading
	rotated   *unix.Stat_t
	Rotations int
}

// stickyTypes start every rotated file, so that each file can be read on its own.
var stickyTypes = []BlockType{BlockMeta, BlockContainers, BlockFacts, BlockLost}

// endReserve keeps room for the end block when a file is full; longer end reasons are cut.
const (
	maxReason  = 200
	endReserve = blockHeaderSize + maxReason + 32
)

// Create opens path for writing ("-" writes to stdout). An existing file is kept unless
// overwrite: a recording is evidence. maxSize > 0 bounds the file: when the next block would
// pass it, the file is closed with an end block, renamed to path.1 and a new file is started
// with the latest meta, containers and facts. path.1 follows the same rule as path: the sink
// replaces its own copy, and another file only with overwrite; a symbolic link at either is
// never written through, and ends the recording with an error.
func Create(path string, maxSize int64, overwrite bool, stdout io.Writer) (*Sink, error) {
	s := &Sink{maxSize: maxSize, overwrite: overwrite, sticky: map[BlockType][]byte{}, start: time.Now()}
	if path == "-" {
		if maxSize > 0 {
			return nil, errors.New("--max-size needs a file to rotate, not -w - (standard output)")
		}
		w, err := NewWriter(stdout)
		if err != nil {
			return nil, err
		}
		s.w = w
		return s, nil
	}
	s.path = path
	if maxSize > 0 {
		// Refused now rather than at the first rotation, minutes into the recording.
		if err := s.checkRotated(); err != nil {
			return nil, err
		}
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// open creates the file: exclusively, or with overwrite through a new file renamed over the old
// one, which replaces the old file's name and never writes into what it points to.
func (s *Sink) open() error {
	var f *os.File
	var err error
	if s.overwrite {
		f, err = s.replace()
	} else {
		f, err = os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
		if errors.Is(err, os.ErrExist) {
			if st, lerr := os.Lstat(s.path); lerr == nil && st.Mode()&os.ModeSymlink != 0 {
				return fmt.Errorf("%s is a symbolic link; sockscope writes recordings only to regular files it creates", s.path)
			}
			return fmt.Errorf("%s already exists; choose another file or add --force to overwrite it", s.path)
		}
	}
	if err != nil {
		return err
	}
	w, err := NewWriter(f)
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.w, s.fresh = f, w, true
	return nil
}

// replace creates a new file beside path and renames it over path: --force. A symbolic link or
// anything but a regular file at path is refused.
func (s *Sink) replace() (*os.File, error) {
	if st, err := os.Lstat(s.path); err == nil && !st.Mode().IsRegular() {
		if st.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s is a symbolic link; sockscope writes recordings only to regular files it creates, even with --force", s.path)
		}
		return nil, fmt.Errorf("%s is not a regular file; --force replaces only recordings", s.path)
	}
	// os.CreateTemp opens with O_EXCL: a name planted in the directory is never opened.
	f, err := os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o640); err == nil {
		err = os.Rename(f.Name(), s.path)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// checkRotated says whether path.1 may be replaced: it does not exist, or it is the copy this
// sink made, or a regular file and overwrite is set.
func (s *Sink) checkRotated() error {
	old := s.path + ".1"
	var st unix.Stat_t
	err := unix.Lstat(old, &st)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return err
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%s is a symbolic link: rotating %s would replace it; sockscope writes recordings only to regular files it creates", old, s.path)
	case s.rotated != nil && st.Dev == s.rotated.Dev && st.Ino == s.rotated.Ino:
		return nil
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s is not a regular file: rotating %s would replace it", old, s.path)
	case !s.overwrite:
		return fmt.Errorf("%s already exists: rotating %s would replace it; move it away or add --force", old, s.path)
	}
	return nil
}

// Size is the current file's size.
func (s *Sink) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return 0
	}
	return s.w.Size()
}

// ErrEnded is what writes get after the recording ended (closed, or a rotation refused).
var ErrEnded = errors.New("the recording has ended")

// Write writes one block; payloads of sticky types are remembered for rotation.
func (s *Sink) Write(t BlockType, at time.Time, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return ErrEnded
	}
	at = s.steady(at)
	// The stored size is at most the payload's (compression is used only when it is smaller).
	if s.path != "" && s.maxSize > 0 && t != BlockMeta &&
		s.w.Size()+BlockSize(len(payload))+endReserve > s.maxSize && !s.fresh {
		if err := s.rotate(at); err != nil {
			return err
		}
	}
	if err := s.w.WriteBlock(t, at.UnixNano(), payload); err != nil {
		return err
	}
	if slices.Contains(stickyTypes, t) {
		s.sticky[t] = slices.Clone(payload)
	}
	s.fresh = s.fresh && t == BlockMeta
	return nil
}

// WriteJSON writes v as a JSON block.
func (s *Sink) WriteJSON(t BlockType, at time.Time, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.Write(t, at, b)
}

func (s *Sink) rotate(at time.Time) error {
	// What path.1 is, checked before the current file is ended: refused, the recording ends
	// with an error in its own end block.
	if err := s.checkRotated(); err != nil {
		return err
	}
	end, _ := json.Marshal(End{Reason: "max-size"})
	if err := s.w.WriteBlock(BlockEnd, at.UnixNano(), end); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(s.f.Fd()), &st); err != nil {
		return err
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	s.f, s.w = nil, nil // ended: Close has nothing more to write
	old := s.path + ".1"
	var err error
	if s.rotated != nil || s.overwrite {
		err = unix.Rename(s.path, old) // replaces the sink's own copy (or, with overwrite, a file)
	} else {
		err = renameNoReplace(s.path, old) // something planted since the check stays
	}
	if err != nil {
		return fmt.Errorf("rotate %s to %s: %w", s.path, old, err)
	}
	s.rotated = &st
	if err := s.open(); err != nil {
		return err
	}
	s.Rotations++
	for _, t := range stickyTypes {
		p, ok := s.sticky[t]
		if f := s.base[t]; f != nil {
			var err error
			if p, err = f(); err != nil {
				return err
			}
			ok = true
		}
		if ok {
			if err := s.w.WriteBlock(t, at.UnixNano(), p); err != nil {
				return err
			}
		}
	}
	return nil
}

// renameNoReplace renames old to new unless new exists, whatever it is.
func renameNoReplace(old, new string) error {
	err := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_NOREPLACE: link fails as well if new exists.
		if err = unix.Link(old, new); err == nil {
			err = unix.Unlink(old)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s appeared during the recording; sockscope does not replace it", new)
	}
	return err
}

// SetBase makes a rotated file start with f's payload as its block of type t, instead of the
// last such block written: a writer that sends only changes (BlockContainerChanges) gives the new
// file its full state. f is called while the sink is locked, and must not write to it.
func (s *Sink) SetBase(t BlockType, f func() ([]byte, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base == nil {
		s.base = map[BlockType]func() ([]byte, error){}
	}
	s.base[t] = f
}

// steady returns the time of a block as the sink's start plus the time elapsed since, on the
// monotonic clock: a wall clock that NTP steps back does not make the file's times go back. (A
// time without a monotonic reading, as tests build them, stays as it is.)
func (s *Sink) steady(at time.Time) time.Time { return s.start.Add(at.Sub(s.start)) }

// Close writes the end block and closes the file. After a rotation that failed, the file has
// its end block already and Close does nothing.
func (s *Sink) Close(at time.Time, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	at = s.steady(at)
	if s.w == nil {
		return nil
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	end, _ := json.Marshal(End{Reason: reason})
	err := s.w.WriteBlock(BlockEnd, at.UnixNano(), end)
	if s.f != nil {
		if e := s.f.Close(); err == nil {
			err = e
		}
	}
	s.w, s.f = nil, nil
	return err
}
