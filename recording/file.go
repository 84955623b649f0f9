package recording

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"
)

// Sink is where `sockscope record` writes: a file (rotated at a size bound) or a stream. It is
// safe for concurrent use; each block is written whole.
type Sink struct {
	mu        sync.Mutex
	path      string // "" for a stream
	maxSize   int64
	f         *os.File
	w         *Writer
	sticky    map[BlockType][]byte // the latest meta, containers, facts and lost: repeated in a new file
	base      map[BlockType]func() ([]byte, error)
	fresh     bool      // nothing written since the file began (header, meta, sticky replay)
	start     time.Time // with its monotonic clock reading
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
// pass it, the file is closed with an end block, renamed to path.1 (replacing an older one) and
// a new file is started with the latest meta, containers and facts.
func Create(path string, maxSize int64, overwrite bool, stdout io.Writer) (*Sink, error) {
	s := &Sink{maxSize: maxSize, sticky: map[BlockType][]byte{}, start: time.Now()}
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
	if err := s.open(overwrite); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sink) open(overwrite bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !overwrite {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(s.path, flags, 0o640)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists; choose another file or add --force to overwrite it", s.path)
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

// Size is the current file's size.
func (s *Sink) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Size()
}

// Write writes one block; payloads of sticky types are remembered for rotation.
func (s *Sink) Write(t BlockType, at time.Time, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
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
	end, _ := json.Marshal(End{Reason: "max-size"})
	if err := s.w.WriteBlock(BlockEnd, at.UnixNano(), end); err != nil {
		return err
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(s.path, s.path+".1"); err != nil {
		return err
	}
	if err := s.open(true); err != nil {
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

// Close writes the end block and closes the file.
func (s *Sink) Close(at time.Time, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	at = s.steady(at)
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
	return err
}
