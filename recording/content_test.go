package recording

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/sockscope/sockscope/events/sockets"
	"github.com/sockscope/sockscope/events/trace"
)

// checkRecording compares every field of a loaded recording with the expected one.
func checkRecording(t *testing.T, got, want *Recording, wantSocks [][]sockets.Socket) {
	t.Helper()
	if !reflect.DeepEqual(got.Meta, want.Meta) {
		t.Errorf("meta:\n got %+v\nwant %+v", got.Meta, want.Meta)
	}
	if !slices.Equal(got.Events, want.Events) {
		t.Errorf("events:\n got %+v\nwant %+v", got.Events, want.Events)
	}
	if len(got.Sockets) != len(want.Sockets) {
		t.Errorf("%d socket snapshots, want %d", len(got.Sockets), len(want.Sockets))
	}
	for i := range min(len(got.Sockets), len(want.Sockets)) {
		g, w := got.Sockets[i], want.Sockets[i]
		if !g.Time.Equal(w.Time) || g.Netns != w.Netns || g.PortRange != w.PortRange || g.TWReuse != w.TWReuse ||
			!bytes.Equal(g.Records, w.Records) || !bytes.Equal(g.Owners, w.Owners) {
			t.Errorf("socket snapshot %d:\n got %+v\nwant %+v", i, g, w)
		}
		socks, err := g.Decode()
		if err != nil {
			t.Errorf("socket snapshot %d: %v", i, err)
		} else if !slices.Equal(socks, wantSocks[i]) {
			t.Errorf("socket snapshot %d decodes to\n %+v\nwant %+v", i, socks, wantSocks[i])
		}
	}
	if !reflect.DeepEqual(got.Syscalls, want.Syscalls) {
		t.Errorf("syscalls:\n got %+v\nwant %+v", got.Syscalls, want.Syscalls)
	}
	if !reflect.DeepEqual(got.Facts, want.Facts) {
		t.Errorf("facts:\n got %+v\nwant %+v", got.Facts, want.Facts)
	}
	if !reflect.DeepEqual(got.Containers, want.Containers) {
		t.Errorf("containers:\n got %+v\nwant %+v", got.Containers, want.Containers)
	}
	if got.Lost != want.Lost {
		t.Errorf("lost %+v, want %+v", got.Lost, want.Lost)
	}
	if (got.End == nil) != (want.End == nil) || got.End != nil && *got.End != *want.End {
		t.Errorf("end %+v, want %+v", got.End, want.End)
	}
	if !got.Last.Equal(want.Last) {
		t.Errorf("last block at %v, want %v", got.Last, want.Last)
	}
	if got.Rotations != want.Rotations {
		t.Errorf("%d rotations, want %d", got.Rotations, want.Rotations)
	}
	if got.Size != want.Size {
		t.Errorf("size %d, want %d", got.Size, want.Size)
	}
}

func TestLoadRoundTripsEveryBlockType(t *testing.T) {
	fx := sampleFixture(t)
	rec, err := Load(bytes.NewReader(fx.data))
	if err != nil {
		t.Fatal(err)
	}
	checkRecording(t, rec, fx.want, fx.socks)

	if got := rec.Lost.Total(); got != 11 {
		t.Errorf("Lost.Total() = %d, want 11", got)
	}
	if got, want := rec.Events[1].CommString(), "curl"; got != want {
		t.Errorf("event 1 comm %q, want %q", got, want)
	}
	wall := rec.Clock().Wall(rec.Events[0].Mono)
	if want := fx.want.Meta.ClockOffset + int64(rec.Events[0].Mono); wall.UnixNano() != want {
		t.Errorf("event 0 at %v (%d), want %d", wall, wall.UnixNano(), want)
	}
}

func TestLoadRoundTripsCompressedBlocks(t *testing.T) {
	fx := sampleFixture(t)
	spans := scanBlocks(t, fx.data)
	if len(spans) != len(fx.types) {
		t.Fatalf("%d blocks in the file, wrote %d", len(spans), len(fx.types))
	}
	// The 3-event block (288 bytes) and the facts (21 processes) are worth compressing; the
	// 1-event block (96 bytes) and the end block are below compressMin.
	wantFlags := map[int]byte{2: flagDeflate, 3: 0, 4: flagDeflate, 10: flagDeflate, 13: 0}
	for i, want := range wantFlags {
		if spans[i].typ != fx.types[i] {
			t.Fatalf("block %d is %v, wrote %v", i, spans[i].typ, fx.types[i])
		}
		if spans[i].flags != want {
			t.Errorf("%v block %d has flags %d, want %d", spans[i].typ, i, spans[i].flags, want)
		}
	}
	// The facts JSON is stored at a fraction of its size.
	raw := len(mustJSON(t, sampleFacts(0)))
	if stored := spans[2].end - spans[2].start - 20; stored*2 > raw {
		t.Errorf("facts block stores %d bytes for %d bytes of JSON", stored, raw)
	}
	// Decompressed contents are checked field by field in TestLoadRoundTripsEveryBlockType;
	// here, that the 3-event block came back in order.
	rec, err := Load(bytes.NewReader(fx.data))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint64{1_000_000, 2_000_000, 3_000_000, 1_000_000} {
		if rec.Events[i].Mono != want {
			t.Errorf("event %d at %d, want %d", i, rec.Events[i].Mono, want)
		}
	}
}

func TestLoadRejectsNonRecordings(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		detail string
	}{
		{"empty", "", "the file is empty"},
		{"short text", "hello", "no sockscope header"},
		{"text", "hello world, this is not a recording", "no sockscope header"},
		{"png", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "no sockscope header"},
		{"magic with another case", "\x89scope\r\n\x01\x00\x00\x00\x00\x00\x00\x00", "no sockscope header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, err := Load(strings.NewReader(c.in))
			if rec != nil {
				t.Errorf("got a recording %+v", rec)
			}
			fe := wantFormatError(t, err, ErrNotRecording, 0)
			if !strings.Contains(fe.Detail, c.detail) {
				t.Errorf("detail %q, want it to contain %q", fe.Detail, c.detail)
			}
		})
	}
}

func TestLoadRefusesNewerVersion(t *testing.T) {
	data := slices.Clone(sampleFixture(t).data)
	copy(data, rawHeader(Version+1))
	_, err := Load(bytes.NewReader(data))
	wantFormatError(t, err, ErrNewerVersion, 8)
	for _, want := range []string{fmt.Sprintf("format version %d", Version+1), fmt.Sprintf("up to version %d", Version), "upgrade sockscope"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	copy(data, rawHeader(0))
	_, err = Load(bytes.NewReader(data))
	wantFormatError(t, err, ErrCorrupt, 8)
}

func TestLoadFlippedHeaderByte(t *testing.T) {
	data := sampleFixture(t).data
	for p := range 16 {
		bad := slices.Clone(data)
		bad[p] ^= 0xff
		_, err := Load(bytes.NewReader(bad))
		sentinel, offset := ErrChecksum, int64(12)
		if p < 8 {
			sentinel, offset = ErrNotRecording, 0
		}
		if m := formatErrorMismatch(err, sentinel, offset); m != "" {
			t.Errorf("byte %d flipped: %s", p, m)
		}
	}
}

func TestLoadTruncatedAtEveryLength(t *testing.T) {
	fx := sampleFixture(t)
	spans := scanBlocks(t, fx.data)
	for cut := 0; cut <= len(fx.data); cut++ {
		rec, err := Load(bytes.NewReader(fx.data[:cut]))
		if cut < 16 {
			// Too short for the magic, or the magic followed by part of the header.
			sentinel, offset := ErrNotRecording, int64(0)
			if cut >= 8 {
				sentinel, offset = ErrTruncated, int64(cut)
			}
			if m := formatErrorMismatch(err, sentinel, offset); m != "" {
				t.Errorf("cut at %d (in the header): %s", cut, m)
			}
			continue
		}
		whole := 0 // blocks wholly before the cut
		for whole < len(spans) && spans[whole].end <= cut {
			whole++
		}
		if whole == 0 || whole < len(spans) && spans[whole].start < cut {
			// Inside a block, or a header without blocks: truncated, exactly where the data ends.
			if m := formatErrorMismatch(err, ErrTruncated, int64(cut)); m != "" {
				t.Errorf("cut at %d (block %d starts at %d): %s", cut, whole, spans[min(whole, len(spans)-1)].start, m)
			}
			continue
		}
		// At a block boundary: what came before the cut loads.
		if err != nil {
			t.Errorf("cut at %d (after block %d): %v", cut, whole-1, err)
			continue
		}
		checkPrefix(t, cut, rec, fx, whole)
	}
}

// checkPrefix checks a recording cut after its first n blocks.
func checkPrefix(t *testing.T, cut int, rec *Recording, fx fixture, n int) {
	t.Helper()
	count := func(typ BlockType) int {
		c := 0
		for _, bt := range fx.types[:n] {
			if bt == typ {
				c++
			}
		}
		return c
	}
	nEvents := 0
	for _, e := range fx.events[:n] {
		nEvents += e
	}
	want := fx.want
	if !reflect.DeepEqual(rec.Meta, want.Meta) {
		t.Errorf("cut at %d: meta %+v", cut, rec.Meta)
	}
	if !slices.Equal(rec.Events, want.Events[:nEvents]) {
		t.Errorf("cut at %d: events %+v, want the first %d", cut, rec.Events, nEvents)
	}
	if len(rec.Sockets) != count(BlockSockets) || len(rec.Syscalls) != count(BlockSyscalls) ||
		len(rec.Facts) != count(BlockFacts) || len(rec.Containers) != count(BlockContainers) {
		t.Errorf("cut at %d: %d sockets, %d syscalls, %d facts, %d containers blocks; want %d, %d, %d, %d", cut,
			len(rec.Sockets), len(rec.Syscalls), len(rec.Facts), len(rec.Containers),
			count(BlockSockets), count(BlockSyscalls), count(BlockFacts), count(BlockContainers))
	}
	if n == len(fx.types) {
		if rec.End == nil || *rec.End != *want.End {
			t.Errorf("cut at %d (the whole file): end %+v, want %+v", cut, rec.End, want.End)
		}
	} else if rec.End != nil {
		t.Errorf("cut at %d: end %+v, want none", cut, rec.End)
	}
	if !rec.Last.Equal(at(n - 1)) {
		t.Errorf("cut at %d: last block at %v, want %v", cut, rec.Last, at(n-1))
	}
	if rec.Size != int64(cut) {
		t.Errorf("cut at %d: size %d", cut, rec.Size)
	}
}

func TestLoadFlippedByteInEachBlock(t *testing.T) {
	data := sampleFixture(t).data
	for i, s := range scanBlocks(t, data) {
		for p := s.start; p < s.end; p++ {
			if p >= s.start+4 && p < s.start+8 {
				continue // the length: changes where the block ends, not only its checksum
			}
			bad := slices.Clone(data)
			bad[p] ^= 0xff
			_, err := Load(bytes.NewReader(bad))
			if m := formatErrorMismatch(err, ErrChecksum, int64(s.start)); m != "" {
				t.Errorf("block %d (%v at %d), byte %d flipped: %s", i, s.typ, s.start, p-s.start, m)
			}
		}
	}
}

func TestLoadRejectsHugeBlockLength(t *testing.T) {
	for _, length := range []uint32{MaxPayload + 1, 1 << 31, 0xffffffff} {
		meta := metaBlock(t)
		huge := rawBlock(BlockEvents, 0, at(1).UnixNano(), make([]byte, 8))
		binary.LittleEndian.PutUint32(huge[4:], length)
		data := rawFile(meta, huge)

		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Load(bytes.NewReader(data))
		runtime.ReadMemStats(&after)

		fe := wantFormatError(t, err, ErrCorrupt, int64(16+len(meta)))
		if !strings.Contains(fe.Detail, "larger than the format allows") {
			t.Errorf("length %d: detail %q", length, fe.Detail)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("length %d: Load allocated %d bytes", length, n)
		}
	}
}

func TestLoadRequiresMetaFirst(t *testing.T) {
	_, err := Load(bytes.NewReader(rawFile(rawBlock(BlockContainers, 0, at(0).UnixNano(), mustJSON(t, sampleContainers(0))))))
	fe := wantFormatError(t, err, ErrCorrupt, 16)
	if want := "containers block: the file must start with a meta block"; fe.Detail != want {
		t.Errorf("detail %q, want %q", fe.Detail, want)
	}

	_, err = Load(bytes.NewReader(rawFile()))
	wantFormatError(t, err, ErrTruncated, 16)
}

func TestLoadRejectsBadPayloads(t *testing.T) {
	snaps, _ := sampleSockets()
	moreRecords := EncodeSockets(&snaps[0])
	binary.LittleEndian.PutUint32(moreRecords[16:], 5)
	fewerOwners := EncodeSockets(&snaps[0])
	binary.LittleEndian.PutUint32(fewerOwners[20:], 3)
	cases := []struct {
		name   string
		block  []byte
		detail string
	}{
		{"events of 100 bytes", rawBlock(BlockEvents, 0, 1, make([]byte, 100)),
			"events block: 100 bytes is not a whole number of 96-byte events"},
		{"events of 2 records and a half", rawBlock(BlockEvents, 0, 1, make([]byte, 240)),
			"events block: 240 bytes is not a whole number of 96-byte events"},
		{"sockets counting a record too many", rawBlock(BlockSockets, 0, 1, moreRecords),
			"sockets block: 5 sockets and 4 owners need 376 bytes, the block has 320"},
		{"sockets counting an owner too few", rawBlock(BlockSockets, 0, 1, fewerOwners),
			"sockets block: 4 sockets and 3 owners need 296 bytes, the block has 320"},
		{"sockets shorter than its header", rawBlock(BlockSockets, 0, 1, make([]byte, 10)),
			"sockets block: 10 bytes, shorter than its 24-byte header"},
		{"facts that are not JSON", rawBlock(BlockFacts, 0, 1, []byte("{netns")), "facts block: "},
		{"unknown flags", rawBlock(BlockEvents, 2, 1, nil), "unknown block flags 0x2"},
		{"deflate flag on a stored payload", rawBlock(BlockEvents, flagDeflate, 1, []byte("not a deflate stream")),
			"events block does not decompress"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			meta, events := metaBlock(t), rawBlock(BlockEvents, 0, 1, sampleEvents[0].raw)
			_, err := Load(bytes.NewReader(rawFile(meta, events, c.block)))
			fe := wantFormatError(t, err, ErrCorrupt, int64(16+len(meta)+len(events)))
			if !strings.HasPrefix(fe.Detail, c.detail) {
				t.Errorf("detail %q, want %q", fe.Detail, c.detail)
			}
		})
	}
}

func TestLoadSkipsUnknownBlockTypes(t *testing.T) {
	data := rawFile(
		metaBlock(t),
		rawBlock(200, 0, at(1).UnixNano(), []byte("a block from a newer sockscope")),
		rawBlock(BlockEvents, 0, at(2).UnixNano(), sampleEvents[1].raw),
		rawBlock(201, 0, at(3).UnixNano(), nil),
		rawBlock(BlockLost, 0, at(4).UnixNano(), []byte(`{"ring_full":3}`)),
		rawBlock(BlockEnd, 0, at(5).UnixNano(), []byte(`{"reason":"signal"}`)),
	)
	rec, err := Load(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.Events, []trace.Event{sampleEvents[1].want}) {
		t.Errorf("events %+v", rec.Events)
	}
	if rec.Lost != (Lost{RingFull: 3}) || rec.End == nil || rec.End.Reason != "signal" || !rec.Last.Equal(at(5)) || rec.Size != int64(len(data)) {
		t.Errorf("lost %+v, end %+v, last %v, size %d", rec.Lost, rec.End, rec.Last, rec.Size)
	}
}

func TestLoadRejectsBlocksAfterEnd(t *testing.T) {
	meta, end := metaBlock(t), rawBlock(BlockEnd, 0, at(1).UnixNano(), []byte(`{"reason":"duration"}`))
	_, err := Load(bytes.NewReader(rawFile(meta, end, rawBlock(BlockEvents, 0, at(2).UnixNano(), sampleEvents[0].raw))))
	fe := wantFormatError(t, err, ErrCorrupt, int64(16+len(meta)+len(end)))
	if want := "events block: found after the end block"; fe.Detail != want {
		t.Errorf("detail %q, want %q", fe.Detail, want)
	}
}

func TestLoadContinuesAfterMaxSizeEnd(t *testing.T) {
	other := sampleMeta()
	other.Hostname = "elsewhere"
	data := rawFile(
		metaBlock(t),
		rawBlock(BlockEvents, 0, at(1).UnixNano(), sampleEvents[0].raw),
		rawBlock(BlockEnd, 0, at(2).UnixNano(), []byte(`{"reason":"max-size"}`)),
		rawBlock(BlockMeta, 0, at(2).UnixNano(), mustJSON(t, other)),
		rawBlock(BlockEvents, 0, at(3).UnixNano(), sampleEvents[2].raw),
		rawBlock(BlockEnd, 0, at(4).UnixNano(), []byte(`{"reason":"signal"}`)),
	)
	rec, err := Load(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Rotations != 1 || rec.End == nil || rec.End.Reason != "signal" || rec.Meta.Hostname != "build-7" {
		t.Errorf("rotations %d, end %+v, meta %+v", rec.Rotations, rec.End, rec.Meta)
	}
	if !slices.Equal(rec.Events, []trace.Event{sampleEvents[0].want, sampleEvents[2].want}) {
		t.Errorf("events %+v", rec.Events)
	}
}
