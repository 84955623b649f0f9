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

// Version is the format version this package writes and the newest it reads.
const Version = 1

const (
	headerSize      = 16
	blockHeaderSize = 16
	// MaxPayload bounds one block as stored, and maxInflated as decompressed, so that a corrupt
	// length cannot make a reader allocate without bound.
	MaxPayload  = 64 << 20
	maxInflated = 256 << 20

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
	BlockEvents     BlockType = 4 // raw trace records, events.RecordSize bytes each
	BlockSockets    BlockType = 5 // one namespace's socket snapshot (binary, see EncodeSockets)
	BlockSyscalls   BlockType = 6 // JSON loader.SyscallSnapshot, cumulative since the start
	BlockLost       BlockType = 7 // JSON Lost, cumulative since the start
	BlockEnd        BlockType = 8 // JSON End: the last block of a complete file
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
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Block is one decoded block.
type Block struct {
	Type    BlockType
	Time    int64  // Unix nanoseconds when it was written
	Payload []byte // decompressed
	Offset  int64  // where the block starts in the file
}

// Errors a reader returns, wrapped in a *FormatError that says where.
var (
	ErrNotRecording = errors.New("not a sockscope recording")
	ErrNewerVersion = errors.New("written by a newer sockscope")
	ErrTruncated    = errors.New("truncated")
	ErrChecksum     = errors.New("checksum mismatch (the file is corrupt)")
	ErrCorrupt      = errors.New("corrupt block")
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

// Reader reads blocks from a recording.
type Reader struct {
	r       io.Reader
	off     int64
	Version uint16
	payload []byte
}

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
	return &Reader{r: r, off: headerSize, Version: v}, nil
}

// Offset is where the next block starts.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next block. It returns io.EOF when the file ends at a block boundary, and a
// *FormatError for anything else that is wrong. The payload is valid until the next call.
func (r *Reader) Next() (Block, error) {
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
	b := Block{Type: BlockType(h[0]), Time: int64(binary.LittleEndian.Uint64(h[8:])), Offset: start}
	flags := h[1]
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
	if flags&^flagDeflate != 0 {
		return Block{}, &FormatError{start, ErrCorrupt, fmt.Sprintf("unknown block flags %#x", flags)}
	}
	if flags&flagDeflate != 0 {
		out, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(b.Payload)), maxInflated+1))
		if err != nil {
			return Block{}, &FormatError{start, ErrCorrupt, fmt.Sprintf("%s block does not decompress: %v", b.Type, err)}
		}
		if len(out) > maxInflated {
			return Block{}, &FormatError{start, ErrCorrupt, fmt.Sprintf("%s block decompresses to more than %d bytes", b.Type, maxInflated)}
		}
		b.Payload = out
	}
	return b, nil
}

func (r *Reader) readErr(start, got int64, err error, where string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &FormatError{start + got, ErrTruncated, where}
	}
	return fmt.Errorf("read at offset %d: %w", start+got, err)
}
