// Package recording is sockscope's capture file: what `sockscope record` saw, to be replayed by
// trace, syscalls and sockets, summarised by report and diagnosed by diagnose, later and on
// another machine.
//
// A file is a 16-byte header followed by blocks, each checksummed on its own, so a file can be
// written as a stream (to a pipe), read while it grows, and cut short without losing what came
// before the cut:
//
//	header: magic "\x89SCOPE\r\n" | version u16 | flags u16 | CRC-32C of the 12 bytes before u32
//	block:  type u8 | flags u8 | reserved u16 | payload length u32 | time (Unix ns) i64 |
//	        payload | CRC-32C of the block header and payload u32
//
// All integers are little-endian. Block flag 1 means the payload is DEFLATE-compressed. A
// reader skips block types it does not know, so a newer writer can add blocks without a new
// version; a new version number means the old reader must refuse the file.
//
// Everything a file says is checked against what sockscope can honestly have written before it
// costs memory or time: block lengths, decompressed sizes (a budget per file, see Budget), the
// interval, the number of timeline steps. Version 2 records the container history as changes
// (BlockContainerChanges) after one full list; an older sockscope would misname the containers
// that started later, so it must refuse such a file.
package recording

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Version is the format version this package writes and the newest it reads (it reads 1 too).
const Version = 2

const (
	headerSize      = 16
	blockHeaderSize = 16
	// MaxPayload bounds one block as stored, and MaxInflated as decompressed, so that a corrupt
	// length cannot make a reader allocate without bound. The writer refuses payloads beyond
	// MaxInflated too (a socket snapshot of more than a million sockets in one namespace), so
	// that it never writes what the reader refuses.
	MaxPayload  = 64 << 20
	MaxInflated = 64 << 20

	flagDeflate = 1
	// Payloads smaller than this are stored as they are: compressing them gains little.
	compressMin = 256
)

var magic = [8]byte{0x89, 'S', 'C', 'O', 'P', 'E', '\r', '\n'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BlockType says what a block holds; see content.go for each payload.
type BlockType uint8

const (
	BlockMeta       BlockType = 1 // JSON Meta: written first
	BlockContainers BlockType = 2 // JSON Containers: whenever the set changes
	BlockFacts      BlockType = 3 // JSON Facts: every interval
	BlockEvents     BlockType = 4 // raw trace records, trace.RecordSize bytes each (events/trace)
	BlockSockets    BlockType = 5 // one namespace's socket snapshot (binary, see EncodeSockets)
	BlockSyscalls   BlockType = 6 // JSON SyscallCounts, cumulative since the start
	BlockLost       BlockType = 7 // JSON Lost, cumulative since the start
	BlockEnd        BlockType = 8 // JSON End: the last block of a complete file
	// JSON Containers holding only the containers that changed since the last block of either
	// kind (version 2): a start, a stop, an exit code.
	BlockContainerChanges BlockType = 9
	// JSON Stacks: the user stacks counted since the previous stacks block (record --stacks).
	// Readers that predate it skip it, as they skip every type they do not know.
	BlockStacks BlockType = 10
)

func (t BlockType) String() string {
	switch t {
	case BlockMeta:
		return "meta"
	case BlockContainers:
		return "containers"
	case BlockFacts:
		return "facts"
	case BlockEvents:
		return "events"
	case BlockSockets:
		return "sockets"
	case BlockSyscalls:
		return "syscalls"
	case BlockLost:
		return "lost"
	case BlockEnd:
		return "end"
	case BlockContainerChanges:
		return "container changes"
	case BlockStacks:
		return "stacks"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Block is one decoded block.
type Block struct {
	Type    BlockType
	Time    int64  // Unix nanoseconds when it was written
	Payload []byte // decompressed (as stored after NextRaw, until Inflate)
	Offset  int64  // where the block starts in the file
	Stored  int    // payload bytes as stored in the file
	flags   byte
}

// Errors a reader returns, wrapped in a *FormatError that says where.
var (
	ErrNotRecording = errors.New("not a sockscope recording")
	ErrNewerVersion = errors.New("written by a newer sockscope")
	ErrTruncated    = errors.New("truncated")
	ErrChecksum     = errors.New("checksum mismatch (the file is corrupt)")
	ErrCorrupt      = errors.New("corrupt block")
	ErrInflate      = errors.New("too much to decompress")
)

// FormatError is a problem with the file at a byte offset.
type FormatError struct {
	Offset int64
	Err    error
	Detail string
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("offset %d: %v", e.Offset, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

// Writer writes a recording to an io.Writer. It is not safe for concurrent use.
type Writer struct {
	w    io.Writer
	n    int64
	buf  bytes.Buffer
	zbuf bytes.Buffer
	zw   *flate.Writer
}

// NewWriter writes the header to w.
func NewWriter(w io.Writer) (*Writer, error) {
	var h [headerSize]byte
	copy(h[:], magic[:])
	binary.LittleEndian.PutUint16(h[8:], Version)
	binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(h[:12], castagnoli))
	if _, err := w.Write(h[:]); err != nil {
		return nil, err
	}
	zw, _ := flate.NewWriter(nil, flate.BestSpeed)
	return &Writer{w: w, n: headerSize, zw: zw}, nil
}

// Size is how many bytes have been written, header included.
func (w *Writer) Size() int64 { return w.n }

// WriteBlock writes one block in a single Write call, compressing payloads worth it.
func (w *Writer) WriteBlock(t BlockType, unixNano int64, payload []byte) error {
	var flags byte
	if len(payload) > MaxInflated {
		return fmt.Errorf("%s block of %d bytes is larger than the format allows (%d)", t, len(payload), MaxInflated)
	}
	if len(payload) >= compressMin {
		w.zbuf.Reset()
		w.zw.Reset(&w.zbuf)
		w.zw.Write(payload)
		w.zw.Close()
		if w.zbuf.Len() < len(payload) {
			payload, flags = w.zbuf.Bytes(), flagDeflate
		}
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("%s block of %d bytes is larger than the format allows (%d)", t, len(payload), MaxPayload)
	}
	w.buf.Reset()
	var h [blockHeaderSize]byte
	h[0], h[1] = byte(t), flags
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:], uint64(unixNano))
	w.buf.Write(h[:])
	w.buf.Write(payload)
	crc := crc32.Checksum(w.buf.Bytes(), castagnoli)
	w.buf.Write(binary.LittleEndian.AppendUint32(nil, crc))
	n, err := w.w.Write(w.buf.Bytes())
	w.n += int64(n)
	return err
}

// BlockSize is what WriteBlock adds to the file for a payload of n stored bytes.
func BlockSize(n int) int64 { return int64(blockHeaderSize + n + 4) }

// Budget bounds how much a file may decompress to, in total: without it a few hundred
// kilobytes of DEFLATE (which shrinks a run of zeros about 1,000 times) make a reader inflate and
// decode hundreds of megabytes. sockscope's own files decompress to 5 to 15 times their size.
type Budget struct {
	Max   int64 // bytes; 0: Ratio times the file's size
	Ratio int64 // with Max 0; 0: DefaultBudget's
}

// DefaultBudget lets a file decompress to 64 times its size, and at least to a mebibyte.
var DefaultBudget = Budget{Ratio: 64}

const budgetFloor = 1 << 20

// limit is the budget of a file of size bytes (read so far, or in all when known).
func (b Budget) limit(size int64) int64 {
	if b.Max > 0 {
		return b.Max
	}
	r := b.Ratio
	if r <= 0 {
		r = DefaultBudget.Ratio
	}
	return max(budgetFloor, r*size)
}

func (b Budget) String() string {
	if b.Max > 0 {
		return fmt.Sprintf("%d bytes", b.Max)
	}
	r := b.Ratio
	if r <= 0 {
		r = DefaultBudget.Ratio
	}
	return fmt.Sprintf("%dx", r)
}

// Reader reads blocks from a recording.
type Reader struct {
	r       io.Reader
	off     int64
	Version uint16
	payload []byte
	out     bytes.Buffer // decompressed payloads, reused
	zr      io.ReadCloser

	budget   Budget
	size     int64 // the whole file's size, when known
	inflated int64 // bytes decompressed so far
}

// SetBudget sets how much the file may decompress to (DefaultBudget until then). size is the
// file's size when known (0: the budget grows with the bytes read); inflated is what an earlier
// pass over the same file already decompressed, counted against the same budget.
func (r *Reader) SetBudget(b Budget, size, inflated int64) {
	r.budget, r.size, r.inflated = b, size, inflated
}

// Inflated is how many bytes the reader has decompressed so far.
func (r *Reader) Inflated() int64 { return r.inflated }

// NewReader reads and checks the header.
func NewReader(r io.Reader) (*Reader, error) {
	var h [headerSize]byte
	n, err := io.ReadFull(r, h[:])
	if n < len(magic) || !bytes.Equal(h[:len(magic)], magic[:]) {
		if n == 0 && err != nil {
			return nil, &FormatError{0, ErrNotRecording, "the file is empty"}
		}
		return nil, &FormatError{0, ErrNotRecording, "no sockscope header (record one with `sockscope record -w FILE`)"}
	}
	if err != nil {
		return nil, &FormatError{int64(n), ErrTruncated, "in the file header"}
	}
	if crc32.Checksum(h[:12], castagnoli) != binary.LittleEndian.Uint32(h[12:]) {
		return nil, &FormatError{12, ErrChecksum, "in the file header"}
	}
	v := binary.LittleEndian.Uint16(h[8:])
	if v > Version {
		return nil, &FormatError{8, ErrNewerVersion, fmt.Sprintf("format version %d; this sockscope reads up to version %d: upgrade sockscope to read it", v, Version)}
	}
	if v == 0 {
		return nil, &FormatError{8, ErrCorrupt, "format version 0"}
	}
	return &Reader{r: r, off: headerSize, Version: v, budget: DefaultBudget}, nil
}

// Offset is where the next block starts.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next block, decompressed. It returns io.EOF when the file ends at a block
// boundary, and a *FormatError for anything else that is wrong. The payload is valid until the
// next call.
func (r *Reader) Next() (Block, error) {
	b, err := r.NextRaw()
	if err != nil {
		return b, err
	}
	return b, r.Inflate(&b)
}

// NextRaw returns the next block with its payload as stored, its checksum checked: a reader that
// does not want a block's content skips it without decompressing it (see Inflate).
func (r *Reader) NextRaw() (Block, error) {
	start := r.off
	var h [blockHeaderSize]byte
	n, err := io.ReadFull(r.r, h[:])
	if err == io.EOF {
		return Block{}, io.EOF
	}
	if err != nil {
		return Block{}, r.readErr(start, int64(n), err, "in a block header")
	}
	length := binary.LittleEndian.Uint32(h[4:])
	if length > MaxPayload {
		return Block{}, &FormatError{start, ErrCorrupt, fmt.Sprintf("block length %d is larger than the format allows", length)}
	}
	b := Block{Type: BlockType(h[0]), Time: int64(binary.LittleEndian.Uint64(h[8:])), Offset: start, Stored: int(length), flags: h[1]}
	// A corrupt length must not cost its size in memory before the data is there: large
	// blocks are read in growing steps.
	var body []byte
	if length <= 1<<20 {
		if cap(r.payload) < int(length)+4 {
			r.payload = make([]byte, int(length)+4)
		}
		body = r.payload[:int(length)+4]
		n, err = io.ReadFull(r.r, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.r, int64(length)+4))
		n = len(body)
		if err == nil && n < int(length)+4 {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		return Block{}, r.readErr(start, blockHeaderSize+int64(n), err, fmt.Sprintf("in %s block of %d bytes", b.Type, length))
	}
	crc := crc32.Update(crc32.Checksum(h[:], castagnoli), castagnoli, body[:length])
	if crc != binary.LittleEndian.Uint32(body[length:]) {
		return Block{}, &FormatError{start, ErrChecksum, fmt.Sprintf("in a %s block", b.Type)}
	}
	r.off = start + BlockSize(int(length))
	b.Payload = body[:length]
	if b.flags&^flagDeflate != 0 {
		return Block{}, &FormatError{start, ErrCorrupt, fmt.Sprintf("unknown block flags %#x", b.flags)}
	}
	return b, nil
}

// Inflate decompresses a block from NextRaw in place, within the file's budget. The payload is
// valid until the next call.
func (r *Reader) Inflate(b *Block) error {
	if b.flags&flagDeflate == 0 {
		return nil
	}
	zr, err := r.Stream(b)
	if err != nil {
		return err
	}
	r.out.Reset()
	if _, err := r.out.ReadFrom(zr); err != nil {
		return err
	}
	b.Payload = r.out.Bytes()
	return nil
}

// Stream returns a reader of a block's decompressed payload, for a reader that decodes it as it
// comes: a large block then costs no memory of its size. Its errors are *FormatErrors.
func (r *Reader) Stream(b *Block) (io.Reader, error) {
	if b.flags&flagDeflate == 0 {
		return bytes.NewReader(b.Payload), nil
	}
	if r.zr == nil {
		r.zr = flate.NewReader(bytes.NewReader(b.Payload))
	} else if err := r.zr.(flate.Resetter).Reset(bytes.NewReader(b.Payload), nil); err != nil {
		return nil, &FormatError{b.Offset, ErrCorrupt, fmt.Sprintf("%s block does not decompress: %v", b.Type, err)}
	}
	limit := r.budget.limit(max(r.size, r.off))
	return &inflater{r: r, b: b, limit: limit, room: min(int64(MaxInflated), max(limit-r.inflated, 0))}, nil
}

// inflater reads one block's decompressed payload, counting it against the file's budget.
type inflater struct {
	r     *Reader
	b     *Block
	limit int64 // the file's budget
	room  int64 // what this block may still decompress to
	n     int64
}

func (z *inflater) Read(p []byte) (int, error) {
	if int64(len(p)) > z.room-z.n+1 {
		p = p[:z.room-z.n+1]
	}
	n, err := z.r.zr.Read(p)
	z.n += int64(n)
	z.r.inflated += int64(n)
	b := z.b
	if z.n > z.room {
		if z.room < MaxInflated {
			return n, &FormatError{b.Offset, ErrInflate, fmt.Sprintf("the %s block of %d bytes would pass the file's budget of %s (%s its %s; a DEFLATE bomb?); --max-inflate raises it",
				b.Type, b.Stored, humanBytes(z.limit), z.r.budget, humanBytes(max(z.r.size, z.r.off)))}
		}
		return n, &FormatError{b.Offset, ErrCorrupt, fmt.Sprintf("%s block decompresses to more than %d bytes", b.Type, MaxInflated)}
	}
	if err != nil && err != io.EOF {
		return n, &FormatError{b.Offset, ErrCorrupt, fmt.Sprintf("%s block does not decompress: %v", b.Type, err)}
	}
	return n, err
}

// humanBytes is n in B, KiB, MiB or GiB, for messages.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (r *Reader) readErr(start, got int64, err error, where string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &FormatError{start + got, ErrTruncated, where}
	}
	return fmt.Errorf("read at offset %d: %w", start+got, err)
}
