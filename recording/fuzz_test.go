package recording

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"testing"
)

type seed struct {
	name string
	data []byte
	err  error // what Load says of it
}

// fuzzSeeds are a valid recording and some broken ones, each reaching a different check.
func fuzzSeeds(t testing.TB) []seed {
	fx := sampleFixture(t)
	spans := scanBlocks(t, fx.data)
	flipped := slices.Clone(fx.data)
	flipped[spans[3].start+20] ^= 0xff
	newer := slices.Clone(fx.data)
	copy(newer, rawHeader(Version+1))
	huge := rawFile(metaBlock(t), rawBlock(BlockEvents, 0, 1, make([]byte, 8)))
	binary.LittleEndian.PutUint32(huge[len(huge)-28+4:], 0xffffffff)
	snaps, _ := sampleSockets()
	badSockets := EncodeSockets(&snaps[0])
	binary.LittleEndian.PutUint32(badSockets[16:], 5)
	return []seed{
		{"valid", fx.data, nil},
		{"truncated", fx.data[:spans[4].start+30], ErrTruncated},
		{"flipped", flipped, ErrChecksum},
		{"newer-version", newer, ErrNewerVersion},
		{"huge-length", huge, ErrCorrupt},
		{"bad-blocks", rawFile(metaBlock(t),
			rawBlock(200, 0, 1, []byte("from the future")),
			rawBlock(BlockEvents, 0, 2, make([]byte, 100)),
			rawBlock(BlockSockets, 0, 3, badSockets),
			rawBlock(BlockEvents, flagDeflate, 4, []byte("not deflate"))), ErrCorrupt},
	}
}

func TestFuzzSeedsReachTheirChecks(t *testing.T) {
	for _, s := range fuzzSeeds(t) {
		_, err := Load(bytes.NewReader(s.data))
		if !errors.Is(err, s.err) || (err == nil) != (s.err == nil) {
			t.Errorf("%s: got %v, want %v", s.name, err, s.err)
		}
		if s.name == "flipped" {
			if _, err := Load(bytes.NewReader(fixChecksums(s.data))); err != nil {
				t.Errorf("%s with its checksums fixed: %v", s.name, err)
			}
		}
	}
}

func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.data)
	}
	f.Add([]byte{})
	f.Add(rawFile())
	f.Fuzz(checkLoad)
}

// FuzzChecksummedBlocks fuzzes what lies behind the checksums: the header's and every whole
// block's checksum are fixed up before Load, so that mutations reach the payload decoders
// (deflate, JSON, events, sockets) instead of stopping at ErrChecksum. (Its name does not
// contain FuzzLoad, so that -fuzz FuzzLoad still names one target.)
func FuzzChecksummedBlocks(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLoad(t, fixChecksums(data))
	})
}

// fixChecksums returns data with the header's checksum and those of the blocks that fit in it
// recomputed.
func fixChecksums(data []byte) []byte {
	data = slices.Clone(data)
	if len(data) < 16 || !bytes.Equal(data[:8], magic[:]) {
		return data
	}
	binary.LittleEndian.PutUint32(data[12:], crc32.Checksum(data[:12], castagnoli))
	for off := 16; len(data)-off >= 20; {
		n := binary.LittleEndian.Uint32(data[off+4:])
		if n > MaxPayload || uint64(len(data)-off-20) < uint64(n) {
			break
		}
		end := off + 16 + int(n)
		binary.LittleEndian.PutUint32(data[end:], crc32.Checksum(data[off:end], castagnoli))
		off = end + 4
	}
	return data
}

// checkLoad is the property both fuzz targets check: Load does not panic, fails only with a
// *FormatError inside the data, and on success has read all of it.
func checkLoad(t *testing.T, data []byte) {
	rec, err := Load(bytes.NewReader(data))
	if err != nil {
		// bytes.Reader fails only at its end, so every error is about the data.
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("error %v (%T) is not a *FormatError", err, err)
		}
		if fe.Offset < 0 || fe.Offset > int64(len(data)) {
			t.Fatalf("error %q at offset %d of %d bytes", err, fe.Offset, len(data))
		}
		if rec != nil {
			t.Fatalf("got a recording with the error %v", err)
		}
		return
	}
	// Load reads to the end or fails.
	if rec.Size != int64(len(data)) {
		t.Fatalf("a recording of %d bytes from %d bytes", rec.Size, len(data))
	}
}
