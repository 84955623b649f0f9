package recording

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func TestWriterHeaderLayout(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("\x89SCOPE\r\n\x02\x00\x00\x00")
	want = append(want, rawHeader(2)[12:]...)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("header % x, want % x", buf.Bytes(), want)
	}
	if w.Size() != 16 {
		t.Errorf("Size() = %d after the header, want 16", w.Size())
	}
}

func TestWriterBlockLayout(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"reason":"signal"}`)
	if err := w.WriteBlock(BlockEnd, -5, payload); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()[16:]
	want := []byte{8, 0, 0, 0, byte(len(payload)), 0, 0, 0, 0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	want = append(want, payload...)
	want = append(want, rawBlock(BlockEnd, 0, -5, payload)[16+len(payload):]...)
	if !bytes.Equal(got, want) {
		t.Errorf("block\n got % x\nwant % x", got, want)
	}
	if size := w.Size(); size != 16+BlockSize(len(payload)) || size != int64(buf.Len()) {
		t.Errorf("Size() = %d, wrote %d bytes", size, buf.Len())
	}
	if BlockSize(len(payload)) != int64(16+len(payload)+4) {
		t.Errorf("BlockSize(%d) = %d", len(payload), BlockSize(len(payload)))
	}
}

func TestWriterCompressesOnlyWhenWorthIt(t *testing.T) {
	random := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	cases := []struct {
		name    string
		payload []byte
		flags   byte
	}{
		{"empty", nil, 0},
		{"compressible below compressMin", bytes.Repeat([]byte{'a'}, compressMin-1), 0},
		{"compressible at compressMin", bytes.Repeat([]byte{'a'}, compressMin), flagDeflate},
		{"compressible events", bytes.Repeat(sampleEvents[0].raw, 100), flagDeflate},
		{"incompressible", random, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteBlock(BlockEvents, 42, c.payload); err != nil {
				t.Fatal(err)
			}
			s := scanBlocks(t, buf.Bytes())[0]
			if s.flags != c.flags {
				t.Fatalf("flags %d, want %d", s.flags, c.flags)
			}
			stored := buf.Bytes()[s.start+16 : s.end-4]
			if c.flags == 0 {
				if !bytes.Equal(stored, c.payload) {
					t.Errorf("stored payload differs from the one written")
				}
			} else {
				if len(stored) >= len(c.payload) {
					t.Errorf("stored %d bytes for a payload of %d", len(stored), len(c.payload))
				}
				inflated, err := io.ReadAll(flate.NewReader(bytes.NewReader(stored)))
				if err != nil || !bytes.Equal(inflated, c.payload) {
					t.Errorf("stored payload inflates to %d bytes (%v), want the %d written", len(inflated), err, len(c.payload))
				}
			}
			if w.Size() != int64(buf.Len()) {
				t.Errorf("Size() = %d, wrote %d bytes", w.Size(), buf.Len())
			}

			r, err := NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			b, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if b.Type != BlockEvents || b.Time != 42 || b.Offset != 16 || !bytes.Equal(b.Payload, c.payload) {
				t.Errorf("read back %v at %d, offset %d, %d bytes", b.Type, b.Time, b.Offset, len(b.Payload))
			}
		})
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func TestWriterReportsWriteErrors(t *testing.T) {
	boom := errors.New("disk full")
	if _, err := NewWriter(failingWriter{boom}); !errors.Is(err, boom) {
		t.Errorf("NewWriter: got %v, want %v", err, boom)
	}
}

func TestReaderWalksBlocks(t *testing.T) {
	fx := sampleFixture(t)
	spans := scanBlocks(t, fx.data)
	r, err := NewReader(bytes.NewReader(fx.data))
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != Version || r.Offset() != 16 {
		t.Errorf("version %d, offset %d", r.Version, r.Offset())
	}
	for i, s := range spans {
		b, err := r.Next()
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if b.Type != fx.types[i] || b.Offset != int64(s.start) || b.Time != at(i).UnixNano() {
			t.Errorf("block %d: %v at offset %d, time %d; want %v at %d, time %d", i, b.Type, b.Offset, b.Time, fx.types[i], s.start, at(i).UnixNano())
		}
		if r.Offset() != int64(s.end) {
			t.Errorf("block %d: next offset %d, want %d", i, r.Offset(), s.end)
		}
	}
	for range 2 {
		if _, err := r.Next(); err != io.EOF {
			t.Errorf("after the last block: %v, want io.EOF", err)
		}
	}
}

func TestReaderKeepsReadErrors(t *testing.T) {
	boom := errors.New("connection reset")
	fx := sampleFixture(t)
	r, err := NewReader(io.MultiReader(bytes.NewReader(fx.data[:20]), iotestErrReader{boom}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Next()
	if !errors.Is(err, boom) {
		t.Errorf("got %v, want %v", err, boom)
	}
	var fe *FormatError
	if errors.As(err, &fe) {
		t.Errorf("a read error is reported as a format problem: %v", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestBlockTypeNames(t *testing.T) {
	want := map[BlockType]string{BlockMeta: "meta", BlockContainers: "containers", BlockFacts: "facts", BlockEvents: "events",
		BlockSockets: "sockets", BlockSyscalls: "syscalls", BlockLost: "lost", BlockEnd: "end", 0: "type 0", 200: "type 200"}
	for typ, name := range want {
		if typ.String() != name {
			t.Errorf("BlockType(%d).String() = %q, want %q", uint8(typ), typ.String(), name)
		}
	}
}

func TestFormatErrorMessage(t *testing.T) {
	e := &FormatError{Offset: 1234, Err: ErrChecksum, Detail: "in a facts block"}
	if got, want := e.Error(), "offset 1234: checksum mismatch (the file is corrupt): in a facts block"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	e.Detail = ""
	if got, want := e.Error(), "offset 1234: checksum mismatch (the file is corrupt)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestEncodeSocketsLayout(t *testing.T) {
	snaps, _ := sampleSockets()
	s := snaps[0]
	b := EncodeSockets(&s)
	le := binary.LittleEndian
	if len(b) != 24+len(s.Records)+len(s.Owners) {
		t.Fatalf("%d bytes", len(b))
	}
	if le.Uint32(b[0:]) != webNetns || le.Uint32(b[4:]) != 32768 || le.Uint32(b[8:]) != 60999 || le.Uint32(b[12:]) != 2 ||
		le.Uint32(b[16:]) != 4 || le.Uint32(b[20:]) != 4 {
		t.Errorf("header % x", b[:24])
	}
	if !bytes.Equal(b[24:24+len(s.Records)], s.Records) || !bytes.Equal(b[24+len(s.Records):], s.Owners) {
		t.Error("records and owners are not stored as given")
	}
	// Negative settings survive as int32.
	s = snaps[1]
	got, err := decodeSockets(EncodeSockets(&s))
	if err != nil || got.TWReuse != -1 || got.PortRange != [2]int{1024, 65535} || got.Netns != cliNetns {
		t.Errorf("decoded %+v, %v", got, err)
	}
}
