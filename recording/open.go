package recording

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/trace"
)

// File is a recording opened for reading, in two passes so that memory follows what the file
// describes (namespaces, containers, intervals) and not how many events it holds. Open reads
// every block's framing and checksum and keeps the small blocks: the meta, the container
// history, the lost counts and the end. Scan then streams the events, snapshots, syscall counts
// and facts to a Visitor, naming already complete: a container's block may trail its first
// events.
type File struct {
	Meta       Meta
	Containers *History
	Lost       Lost
	End        *End // nil when the file ended without one (the recorder was killed, or the file was cut)
	Rotations  int  // how many times the file was continued after --max-size
	Size       int64
	// Blocks is how many blocks the file holds, and Counts how many of each type.
	Blocks int
	Counts map[BlockType]int
	// Last is the time of the last block; Earliest and Latest the smallest and largest block
	// times (a clock stepped back makes Last earlier than Latest).
	Last, Earliest, Latest time.Time
	// ClockSteps are the places where the clock went back: a wall clock that NTP steps.
	ClockSteps []ClockStep

	src      io.ReaderAt
	budget   Budget
	inflated int64 // by the first pass
}

// ClockStep is a block written earlier, by the clock, than the block before it.
type ClockStep struct {
	Offset int64         // of the block
	At     time.Time     // its time
	Back   time.Duration // how far before the previous block's
}

// clockSlack is how far block times may go back without being a clock step: the recorder's
// goroutines read the clock before they take turns writing.
const clockSlack = time.Second

// maxClockSteps are reported; more are counted in the last.
const maxClockSteps = 16

// Namer names the file's namespaces from its container history.
func (f *File) Namer() *Namer { return NewNamer(f.Containers, f.Meta.HostNetns) }

// Clock converts the recording's event times to wall-clock time.
func (f *File) Clock() events.Clock { return events.ClockWithOffset(f.Meta.ClockOffset) }

// FindNetns returns the namespaces a --container query names in the recording.
func (f *File) FindNetns(q string) ([]uint32, error) { return f.Containers.FindNetns(q, f.Meta.Scope) }

// Open reads a recording's framing, checksums and small blocks (the first pass). size is the
// file's length in bytes; the budget bounds what the whole file may decompress to.
func Open(src io.ReaderAt, size int64, budget Budget) (*File, error) {
	f := &File{Containers: newHistory(), Counts: map[BlockType]int{}, src: src, budget: budget}
	r, err := NewReader(io.NewSectionReader(src, 0, size))
	if err != nil {
		return nil, err
	}
	r.SetBudget(budget, size, 0)
	seenMeta := false
	for {
		b, err := r.NextRaw()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		bad := func(format string, a ...any) error {
			return &FormatError{b.Offset, ErrCorrupt, fmt.Sprintf("%s block: ", b.Type) + fmt.Sprintf(format, a...)}
		}
		if !seenMeta && b.Type != BlockMeta {
			return nil, bad("the file must start with a meta block")
		}
		if f.End != nil && b.Type != BlockMeta {
			return nil, bad("found after the end block")
		}
		at := time.Unix(0, b.Time).UTC()
		f.note(b.Offset, at)
		switch b.Type {
		case BlockMeta, BlockContainers, BlockContainerChanges, BlockLost, BlockEnd:
			if err := r.Inflate(&b); err != nil {
				return nil, err
			}
		}
		switch b.Type {
		case BlockMeta:
			var m Meta
			if err := json.Unmarshal(b.Payload, &m); err != nil {
				return nil, bad("%v", err)
			}
			if err := m.validate(); err != nil {
				return nil, bad("%v", err)
			}
			if !seenMeta {
				f.Meta = m
			} else if f.End != nil && f.End.Reason == "max-size" {
				// Files are self-contained: a rotated file starts with the meta again.
				f.End = nil
				f.Rotations++
			}
			seenMeta = true
		case BlockContainers, BlockContainerChanges:
			if b.Type == BlockContainerChanges && r.Version < 2 {
				return nil, bad("not in a version %d file", r.Version)
			}
			var c Containers
			if err := json.Unmarshal(b.Payload, &c); err != nil {
				return nil, bad("%v", err)
			}
			if err := f.Containers.apply(at, c.List, b.Type == BlockContainers); err != nil {
				return nil, bad("%v", err)
			}
		case BlockLost:
			if err := json.Unmarshal(b.Payload, &f.Lost); err != nil {
				return nil, bad("%v", err)
			}
		case BlockEnd:
			var e End
			if err := json.Unmarshal(b.Payload, &e); err != nil {
				return nil, bad("%v", err)
			}
			f.End = &e
		}
		f.Blocks++
		f.Counts[b.Type]++
	}
	if !seenMeta {
		return nil, &FormatError{r.Offset(), ErrTruncated, "the file has a header but no blocks"}
	}
	f.Size = r.Offset()
	f.inflated = r.Inflated()
	return f, nil
}

// note follows the block times: the last, the earliest and latest, and the clock's steps back.
func (f *File) note(off int64, at time.Time) {
	if f.Blocks == 0 {
		f.Earliest, f.Latest = at, at
	}
	if f.Blocks > 0 && at.Before(f.Last.Add(-clockSlack)) {
		step := ClockStep{Offset: off, At: at, Back: f.Last.Sub(at)}
		if len(f.ClockSteps) < maxClockSteps {
			f.ClockSteps = append(f.ClockSteps, step)
		}
	}
	if at.Before(f.Earliest) {
		f.Earliest = at
	}
	if at.After(f.Latest) {
		f.Latest = at
	}
	f.Last = at
}

// Visitor receives what Scan reads; a nil field's blocks are skipped without being decompressed.
// Each callback's arguments are valid until it returns. An error from a callback ends the scan
// and is returned as it is.
type Visitor struct {
	// Events gets each events block's events, in the order recorded, a few thousand at a time;
	// at is the block's time.
	Events   func(at time.Time, evs []trace.Event) error
	Sockets  func(s *SocketSnapshot) error
	Syscalls func(at time.Time, s *SyscallCounts) error
	Facts    func(at time.Time, f *Facts) error
	Stacks   func(at time.Time, s *Stacks) error
}

// eventChunk is how many events a Visitor gets at once: a block's events are decoded in chunks,
// so that a 64 MiB block does not become 80 MiB of structs.
const eventChunk = 4096

// Scan reads the file again, up to where Open ended, and hands the blocks v asks for to it (the
// second pass). What the first pass decompressed counts against the same budget.
func (f *File) Scan(v Visitor) error {
	r, err := NewReader(io.NewSectionReader(f.src, 0, f.Size))
	if err != nil {
		return err
	}
	r.SetBudget(f.budget, f.Size, f.inflated)
	evs := make([]trace.Event, 0, eventChunk)
	for {
		b, err := r.NextRaw()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var want bool
		switch b.Type {
		case BlockEvents:
			want = v.Events != nil
		case BlockSockets:
			want = v.Sockets != nil
		case BlockSyscalls:
			want = v.Syscalls != nil
		case BlockFacts:
			want = v.Facts != nil
		case BlockStacks:
			want = v.Stacks != nil
		}
		if !want {
			continue
		}
		bad := func(format string, a ...any) error {
			return &FormatError{b.Offset, ErrCorrupt, fmt.Sprintf("%s block: ", b.Type) + fmt.Sprintf(format, a...)}
		}
		at := time.Unix(0, b.Time).UTC()
		if b.Type == BlockEvents {
			// Decoded as they are decompressed: a large block costs one chunk of memory.
			zr, err := r.Stream(&b)
			if err != nil {
				return err
			}
			var rec [trace.RecordSize]byte
			for n := 0; ; {
				evs = evs[:0]
				for len(evs) < eventChunk {
					k, err := io.ReadFull(zr, rec[:])
					if err == io.EOF {
						break
					}
					if err == io.ErrUnexpectedEOF {
						return bad("%d bytes is not a whole number of %d-byte events", n+k, trace.RecordSize)
					}
					if err != nil {
						return err
					}
					n += k
					evs = append(evs, trace.Event{})
					if err := trace.Decode(rec[:], &evs[len(evs)-1]); err != nil {
						return bad("%v", err)
					}
				}
				if len(evs) == 0 {
					break
				}
				if err := v.Events(at, evs); err != nil {
					return err
				}
			}
			continue
		}
		if err := r.Inflate(&b); err != nil {
			return err
		}
		switch b.Type {
		case BlockSockets:
			s, err := decodeSockets(b.Payload)
			if err != nil {
				return bad("%v", err)
			}
			s.Time = at
			if err := v.Sockets(&s); err != nil {
				return err
			}
		case BlockSyscalls:
			var s SyscallCounts
			if err := json.Unmarshal(b.Payload, &s); err != nil {
				return bad("%v", err)
			}
			if err := v.Syscalls(at, &s); err != nil {
				return err
			}
		case BlockFacts:
			var fa Facts
			if err := json.Unmarshal(b.Payload, &fa); err != nil {
				return bad("%v", err)
			}
			if err := v.Facts(at, &fa); err != nil {
				return err
			}
		case BlockStacks:
			var st Stacks
			if err := json.Unmarshal(b.Payload, &st); err != nil {
				return bad("%v", err)
			}
			if err := v.Stacks(at, &st); err != nil {
				return err
			}
		}
	}
}

// Recording is a whole file, decoded into memory: for tests and small files. The commands read
// files with Open and Scan, which keep neither the events nor the snapshots.
type Recording struct {
	Meta       Meta
	Events     []trace.Event
	Sockets    []SocketSnapshot
	Syscalls   []Timed[SyscallCounts]
	Facts      []Timed[Facts]
	Stacks     []Timed[Stacks]
	Containers []Timed[Containers]
	Lost       Lost
	End        *End      // nil when the file ended without one (the recorder was killed, or the file was cut)
	Last       time.Time // time of the last block
	Rotations  int       // how many times the file was continued after --max-size
	Size       int64
}

// Clock converts the recording's event times to wall-clock time.
func (r *Recording) Clock() events.Clock { return events.ClockWithOffset(r.Meta.ClockOffset) }

// History is the recording's container history.
func (r *Recording) History() (*History, error) {
	h := newHistory()
	for _, c := range r.Containers {
		if err := h.apply(c.Time, c.Value.List, !c.Value.Changes); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Namer returns a namer over the recording's container history.
func (r *Recording) Namer() *Namer {
	h, err := r.History()
	if err != nil {
		h = newHistory()
	}
	return NewNamer(h, r.Meta.HostNetns)
}

// FindNetns returns the namespaces a --container query names in the recording.
func (r *Recording) FindNetns(q string) ([]uint32, error) {
	h, err := r.History()
	if err != nil {
		return nil, err
	}
	return h.FindNetns(q, r.Meta.Scope)
}

// Load reads a whole recording into memory, within the default budget. Every problem is a
// *FormatError with the offset of the block.
func Load(rd io.Reader) (*Recording, error) {
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, err
	}
	f, err := Open(bytes.NewReader(data), int64(len(data)), DefaultBudget)
	if err != nil {
		return nil, err
	}
	rec := &Recording{Meta: f.Meta, Lost: f.Lost, End: f.End, Last: f.Last, Rotations: f.Rotations, Size: f.Size}
	// The container blocks were read by the first pass; read them again as they are.
	r, _ := NewReader(bytes.NewReader(data[:f.Size]))
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if b.Type == BlockContainers || b.Type == BlockContainerChanges {
			var c Containers
			if err := json.Unmarshal(b.Payload, &c); err != nil {
				return nil, &FormatError{b.Offset, ErrCorrupt, err.Error()}
			}
			c.Changes = b.Type == BlockContainerChanges
			rec.Containers = append(rec.Containers, Timed[Containers]{time.Unix(0, b.Time).UTC(), c})
		}
	}
	err = f.Scan(Visitor{
		Events: func(_ time.Time, evs []trace.Event) error {
			rec.Events = append(rec.Events, evs...)
			return nil
		},
		Sockets: func(s *SocketSnapshot) error {
			rec.Sockets = append(rec.Sockets, *s)
			return nil
		},
		Syscalls: func(at time.Time, s *SyscallCounts) error {
			rec.Syscalls = append(rec.Syscalls, Timed[SyscallCounts]{at, *s})
			return nil
		},
		Facts: func(at time.Time, fa *Facts) error {
			rec.Facts = append(rec.Facts, Timed[Facts]{at, *fa})
			return nil
		},
		Stacks: func(at time.Time, st *Stacks) error {
			rec.Stacks = append(rec.Stacks, Timed[Stacks]{at, *st})
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// Encode writes the recording as a file, its blocks in time order (events one per block, at
// their wall-clock time; the lost counts every interval, as the recorder writes them with each
// snapshot, and at Last, with the end if any): what a recorder that saw the same would have
// written, for tests and tools that build recordings in memory.
func (r *Recording) Encode() ([]byte, error) {
	type block struct {
		t       BlockType
		at      time.Time
		payload []byte
	}
	var blocks []block
	add := func(t BlockType, at time.Time, v any) error {
		b, ok := v.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(v); err != nil {
				return err
			}
		}
		blocks = append(blocks, block{t, at, b})
		return nil
	}
	var errs []error
	for _, c := range r.Containers {
		t := BlockContainers
		if c.Value.Changes {
			t = BlockContainerChanges
		}
		errs = append(errs, add(t, c.Time, c.Value))
	}
	clock := r.Clock()
	for i := range r.Events {
		errs = append(errs, add(BlockEvents, clock.Wall(r.Events[i].Mono), trace.EncodeEvent(&r.Events[i])))
	}
	for i := range r.Sockets {
		errs = append(errs, add(BlockSockets, r.Sockets[i].Time, EncodeSockets(&r.Sockets[i])))
	}
	for _, s := range r.Syscalls {
		errs = append(errs, add(BlockSyscalls, s.Time, s.Value))
	}
	for _, f := range r.Facts {
		errs = append(errs, add(BlockFacts, f.Time, f.Value))
	}
	for _, st := range r.Stacks {
		errs = append(errs, add(BlockStacks, st.Time, st.Value))
	}
	if r.Meta.Interval >= MinInterval {
		for at := r.Meta.Start.Add(r.Meta.Interval); at.Before(r.Last); at = at.Add(r.Meta.Interval) {
			errs = append(errs, add(BlockLost, at, r.Lost))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortStableFunc(blocks, func(a, b block) int { return a.at.Compare(b.at) })
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		return nil, err
	}
	write := func(t BlockType, at time.Time, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return w.WriteBlock(t, at.UnixNano(), b)
	}
	errs = append(errs, write(BlockMeta, r.Meta.Start, r.Meta))
	for _, b := range blocks {
		errs = append(errs, w.WriteBlock(b.t, b.at.UnixNano(), b.payload))
	}
	errs = append(errs, write(BlockLost, r.Last, r.Lost))
	if r.End != nil {
		errs = append(errs, write(BlockEnd, r.Last, r.End))
	}
	return buf.Bytes(), errors.Join(errs...)
}

// Open encodes the recording (see Encode) and opens it, as the commands read files.
func (r *Recording) Open() (*File, error) {
	data, err := r.Encode()
	if err != nil {
		return nil, err
	}
	return Open(bytes.NewReader(data), int64(len(data)), DefaultBudget)
}

// SelectNetns resolves --container and --netns against the recording: the namespaces the named
// containers had, and each --netns as an inode ("host": the host's). nil means every namespace.
func (f *File) SelectNetns(queries, netns []string) (map[uint32]bool, error) {
	if len(queries) == 0 && len(netns) == 0 {
		return nil, nil
	}
	set := map[uint32]bool{}
	for _, q := range queries {
		inodes, err := f.FindNetns(q)
		if err != nil {
			return nil, err
		}
		for _, ino := range inodes {
			set[ino] = true
		}
	}
	for _, a := range netns {
		if a == "host" {
			set[f.Meta.HostNetns] = true
			continue
		}
		n, err := strconv.ParseUint(a, 10, 32)
		if err != nil {
			return nil, &NetnsArgError{Arg: a}
		}
		set[uint32(n)] = true
	}
	return set, nil
}

// NetnsArgError is a --netns that names no namespace of a recording: a path, which names a
// namespace of this machine. The command line reports it as a usage error.
type NetnsArgError struct{ Arg string }

func (e *NetnsArgError) Error() string {
	return fmt.Sprintf("--netns %q: with -r, give the namespace's inode (a path names a namespace of this machine, not of the recording)", e.Arg)
}
