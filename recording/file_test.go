package recording

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func loadFile(t *testing.T, path string) *Recording {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec, err := Load(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rec
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// randomEvents is n raw events numbered from seq (in Mono), with varied fields so that a block
// does not compress to nothing.
func randomEvents(rng *rand.Rand, seq, n int) []byte {
	var b []byte
	for i := range n {
		var name [8]byte
		for j := range name {
			name[j] = byte('a' + rng.IntN(26))
		}
		saddr := netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		daddr := netip.AddrFrom4([4]byte{172, 17, byte(rng.IntN(256)), byte(rng.IntN(256))})
		b = append(b, eventRecord(uint64(seq+i), rng.Uint64N(1e9), rng.Uint64N(1e6), webNetns, uint32(rng.IntN(1<<22)), 0,
			uint16(rng.IntN(65536)), 443, saddr, daddr, string(name[:]), 2, uint8(1+rng.IntN(11)), uint8(1+rng.IntN(11)), 1)...)
	}
	return b
}

// wantSeq checks that rec holds exactly the events numbered [from, to).
func wantSeq(t *testing.T, name string, rec *Recording, from, to int) {
	t.Helper()
	if len(rec.Events) != to-from {
		t.Errorf("%s: %d events, want %d (%d to %d)", name, len(rec.Events), to-from, from, to-1)
		return
	}
	for i, e := range rec.Events {
		if e.Mono != uint64(from+i) {
			t.Errorf("%s: event %d is number %d, want %d", name, i, e.Mono, from+i)
			return
		}
	}
}

func TestSinkRotatesAtMaxSize(t *testing.T) {
	const (
		maxSize  = 64 << 10
		perBlock = 40 // events per events block: 3840 bytes before compression
		nBlocks  = 90
	)
	path := filepath.Join(t.TempDir(), "rec.scope")
	s, err := Create(path, maxSize, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkSize := func(what string) {
		t.Helper()
		size := fileSize(t, path)
		if size > maxSize {
			t.Fatalf("after %s the file has %d bytes, more than %d", what, size, maxSize)
		}
		if s.Size() != size {
			t.Fatalf("after %s Size() = %d, the file has %d bytes", what, s.Size(), size)
		}
	}
	write := func(typ BlockType, when time.Time, v any) {
		t.Helper()
		if err := s.WriteJSON(typ, when, v); err != nil {
			t.Fatal(err)
		}
		checkSize(typ.String())
	}
	meta := sampleMeta()
	write(BlockMeta, at(0), meta)
	write(BlockContainers, at(0), sampleContainers(0))
	write(BlockFacts, at(0), sampleFacts(0))
	write(BlockLost, at(0), Lost{RingFull: 4})

	// What the current file and the one before it started with.
	type file struct {
		firstSeq, gen int
		started       time.Time
	}
	cur, prev := file{0, 0, at(0)}, file{-1, -1, time.Time{}}
	rng := rand.New(rand.NewPCG(7, 11))
	seq, gen := 0, 0
	for i := 1; i <= nBlocks; i++ {
		if i%10 == 5 {
			// New containers and facts, written only where they cannot make the file rotate
			// themselves, so that every rotation happens on an events block.
			c, f := mustJSON(t, sampleContainers(gen+1)), mustJSON(t, sampleFacts(gen+1))
			if s.Size()+BlockSize(len(c))+BlockSize(len(f))+endReserve <= maxSize {
				gen++
				rotations := s.Rotations
				write(BlockContainers, at(i), sampleContainers(gen))
				write(BlockFacts, at(i), sampleFacts(gen))
				if s.Rotations != rotations {
					t.Fatal("a containers or facts block rotated the file")
				}
			}
		}
		block := randomEvents(rng, seq, perBlock)
		before, rotations := s.Size(), s.Rotations
		if err := s.Write(BlockEvents, at(i), block); err != nil {
			t.Fatal(err)
		}
		checkSize("events block")
		switch s.Rotations {
		case rotations:
		case rotations + 1:
			if before+BlockSize(len(block))+endReserve <= maxSize {
				t.Errorf("rotated at %d bytes though a block of %d fitted", before, len(block))
			}
			prev, cur = cur, file{seq, gen, at(i)}
			checkRotated(t, path+".1", meta, prev.gen, prev.firstSeq, seq, maxSize)
		default:
			t.Fatalf("one block made %d rotations", s.Rotations-rotations)
		}
		seq += perBlock
	}
	if s.Rotations < 2 {
		t.Fatalf("%d rotations in %d blocks, want at least 2", s.Rotations, nBlocks)
	}
	t.Logf("%d rotations; %s.1 has events %d to %d (generation %d), %s has %d to %d (generation %d), latest generation %d",
		s.Rotations, path, prev.firstSeq, cur.firstSeq-1, prev.gen, path, cur.firstSeq, seq-1, cur.gen, gen)
	if err := s.Close(at(nBlocks+1), "signal"); err != nil {
		t.Fatal(err)
	}
	if size := fileSize(t, path); size > maxSize {
		t.Errorf("closed file has %d bytes", size)
	}

	// The current file starts with the meta and the latest containers, facts and lost at the
	// rotation, all at the time of the rotation, then holds every event written since.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []BlockType{BlockMeta, BlockContainers, BlockFacts, BlockLost, BlockEvents} {
		b, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if b.Type != want || b.Time != cur.started.UnixNano() {
			t.Errorf("block at %d: %v at %v, want %v at %v", b.Offset, b.Type, time.Unix(0, b.Time).UTC(), want, cur.started)
		}
	}
	rec := loadFile(t, path)
	if !reflect.DeepEqual(rec.Meta, meta) || rec.End == nil || rec.End.Reason != "signal" || rec.Rotations != 0 || rec.Lost != (Lost{RingFull: 4}) {
		t.Errorf("%s: meta %+v, end %+v, %d rotations, lost %+v", path, rec.Meta, rec.End, rec.Rotations, rec.Lost)
	}
	if !reflect.DeepEqual(rec.Containers[0].Value, sampleContainers(cur.gen)) || !reflect.DeepEqual(rec.Facts[0].Value, sampleFacts(cur.gen)) {
		t.Errorf("%s does not start with the containers and facts of generation %d", path, cur.gen)
	}
	if last := rec.Containers[len(rec.Containers)-1].Value; !reflect.DeepEqual(last, sampleContainers(gen)) {
		t.Errorf("%s: last containers %+v, want generation %d", path, last, gen)
	}
	wantSeq(t, path, rec, cur.firstSeq, seq)

	rotated := loadFile(t, path+".1")
	if got, want := len(rotated.Events)+len(rec.Events), seq-prev.firstSeq; got != want {
		t.Errorf("%d events in FILE.1 and FILE, %d written since FILE.1 was started", got, want)
	}
}

// With blocks too small to be compressed the rotation point is exact: the file is closed when
// the next block and room for the end block (endReserve) would pass maxSize.
func TestSinkRotatesWhenTheEndBlockWouldNotFit(t *testing.T) {
	const maxSize = 4096
	path := filepath.Join(t.TempDir(), "rec.scope")
	s, err := Create(path, maxSize, false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteJSON(BlockMeta, at(0), sampleMeta()); err != nil {
		t.Fatal(err)
	}
	endBlock := BlockSize(len(mustJSON(t, End{Reason: "max-size"})))
	event := sampleEvents[0].raw // 96 bytes: stored as they are
	// What a new file holds after the rotation: the header, the meta (compressed) and the block.
	w, err := NewWriter(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteBlock(BlockMeta, 0, mustJSON(t, sampleMeta())); err != nil {
		t.Fatal(err)
	}
	restarted := w.Size() + BlockSize(len(event))
	for i := 1; s.Rotations == 0; i++ {
		before := s.Size()
		if err := s.Write(BlockEvents, at(i), event); err != nil {
			t.Fatal(err)
		}
		fits := before+BlockSize(len(event))+endReserve <= maxSize
		if rotated := s.Rotations == 1; rotated == fits {
			t.Fatalf("block %d at %d bytes: rotated %v, though the block and the reserve fit %v", i, before, rotated, fits)
		}
		if s.Rotations == 0 {
			continue
		}
		if got := fileSize(t, path+".1"); got != before+endBlock || got > maxSize {
			t.Errorf("%s.1 has %d bytes, want the %d before the block and the end block (%d), at most %d", path, got, before, endBlock, maxSize)
		}
		if got := s.Size(); got != restarted {
			t.Errorf("new file has %d bytes, want the header, the meta and the block: %d", got, restarted)
		}
		rec := loadFile(t, path+".1")
		if len(rec.Events) != i-1 || rec.End == nil || rec.End.Reason != "max-size" {
			t.Errorf("%s.1: %d events, end %+v; want %d events and max-size", path, len(rec.Events), rec.End, i-1)
		}
	}
}

// checkRotated checks a file just closed by a rotation: the meta, the containers and facts of
// generation gen first, the events numbered [from, to), and an end block saying why.
func checkRotated(t *testing.T, path string, meta Meta, gen, from, to int, maxSize int64) {
	t.Helper()
	if size := fileSize(t, path); size > maxSize {
		t.Errorf("%s has %d bytes, more than %d", path, size, maxSize)
	}
	rec := loadFile(t, path)
	if rec.End == nil || rec.End.Reason != "max-size" {
		t.Errorf("%s ends with %+v, want reason max-size", path, rec.End)
	}
	if !reflect.DeepEqual(rec.Meta, meta) {
		t.Errorf("%s: meta %+v", path, rec.Meta)
	}
	if len(rec.Containers) == 0 || !reflect.DeepEqual(rec.Containers[0].Value, sampleContainers(gen)) {
		t.Errorf("%s does not start with the containers of generation %d", path, gen)
	}
	if len(rec.Facts) == 0 || !reflect.DeepEqual(rec.Facts[0].Value, sampleFacts(gen)) {
		t.Errorf("%s does not start with the facts of generation %d", path, gen)
	}
	if rec.Lost != (Lost{RingFull: 4}) {
		t.Errorf("%s: lost %+v", path, rec.Lost)
	}
	wantSeq(t, path, rec, from, to)
}

func TestSinkKeepsExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evidence.scope")
	old := []byte("yesterday's recording")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Create(path, 0, false, io.Discard)
	if err == nil {
		t.Fatal("Create replaced an existing file without overwrite")
	}
	if s != nil {
		t.Errorf("got a sink with the error %v", err)
	}
	for _, want := range []string{path, "already exists", "--force"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, old) {
		t.Errorf("the existing file now holds %q", got)
	}

	s, err = Create(path, 0, true, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteJSON(BlockMeta, at(0), sampleMeta()); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(BlockEvents, at(1), sampleEvents[0].raw); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(at(2), "duration"); err != nil {
		t.Fatal(err)
	}
	rec := loadFile(t, path)
	if rec.Meta.Hostname != "build-7" || len(rec.Events) != 1 || rec.End == nil || rec.End.Reason != "duration" {
		t.Errorf("overwritten file: meta %+v, %d events, end %+v", rec.Meta, len(rec.Events), rec.End)
	}
	if rec.Size != fileSize(t, path) {
		t.Errorf("recording of %d bytes in a file of %d", rec.Size, fileSize(t, path))
	}
}

func TestSinkWritesToStdout(t *testing.T) {
	var stdout bytes.Buffer
	s, err := Create("-", 0, false, &stdout)
	if err != nil {
		t.Fatal(err)
	}
	if stdout.Len() != 16 {
		t.Errorf("%d bytes on stdout after Create, want the 16-byte header", stdout.Len())
	}
	if err := s.WriteJSON(BlockMeta, at(0), sampleMeta()); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(BlockEvents, at(1), sampleEvents[1].raw); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteJSON(BlockLost, at(2), Lost{Nested: 1}); err != nil {
		t.Fatal(err)
	}
	if s.Size() != int64(stdout.Len()) {
		t.Errorf("Size() = %d, %d bytes written", s.Size(), stdout.Len())
	}
	if err := s.Close(at(3), "signal"); err != nil {
		t.Fatal(err)
	}
	rec, err := Load(&stdout)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rec.Meta, sampleMeta()) || len(rec.Events) != 1 || rec.Events[0] != sampleEvents[1].want ||
		rec.Lost != (Lost{Nested: 1}) || rec.End == nil || rec.End.Reason != "signal" {
		t.Errorf("got meta %+v, events %+v, lost %+v, end %+v", rec.Meta, rec.Events, rec.Lost, rec.End)
	}
	if _, err := os.Stat("-"); err == nil {
		t.Error(`Create("-") created a file named "-"`)
	}
}

func TestSinkCannotRotateStdout(t *testing.T) {
	var stdout bytes.Buffer
	s, err := Create("-", 1<<20, false, &stdout)
	if err == nil || s != nil {
		t.Fatalf("got sink %v, error %v; want an error", s, err)
	}
	if !strings.Contains(err.Error(), "--max-size") {
		t.Errorf("error %q does not mention --max-size", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("%d bytes written to stdout", stdout.Len())
	}
}

// A sticky block (facts) that triggers the rotation is written once in the new file, and a long
// end reason does not push the file past its bound.
func TestSinkRotationByAStickyBlockWritesItOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.rec")
	const limit = 8 << 10
	s, err := Create(path, limit, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_800_000_000, 0)
	if err := s.WriteJSON(BlockMeta, at, Meta{Hostname: "h", Start: at, Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	noise := make([]byte, 1000)
	for i := range noise {
		noise[i] = byte(i*7919 + i>>3) // does not compress
	}
	for s.Size()+BlockSize(64)+endReserve <= limit { // fill up without rotating
		if err := s.Write(BlockEvents, at, noise[:64]); err != nil {
			t.Fatal(err)
		}
	}
	facts := Facts{Netns: []NetnsFacts{{Netns: 7, PortRange: [2]int{1, 2}}}, Processes: []Process{}}
	if err := s.WriteJSON(BlockFacts, at, facts); err != nil {
		t.Fatal(err)
	}
	if s.Rotations != 1 {
		t.Fatalf("rotations = %d, want 1", s.Rotations)
	}
	if err := s.Close(at, "error: "+strings.Repeat("x", 500)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".1"} {
		if st, err := os.Stat(p); err != nil || st.Size() > limit {
			t.Errorf("%s: %v, size %d > %d", p, err, st.Size(), limit)
		}
	}
	f, _ := os.Open(path)
	defer f.Close()
	rec, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Facts) != 1 {
		t.Errorf("the new file has %d facts blocks, want 1", len(rec.Facts))
	}
}

// A writer of changes gives a rotated file its full state: the new file starts with the base's
// containers block, and its history names every container the base lists, not only the changes
// written after the rotation.
func TestSinkStartsARotatedFileWithTheBase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.rec")
	const limit = 16 << 10
	s, err := Create(path, limit, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	full := sampleContainers(0)
	bases := 0
	s.SetBase(BlockContainers, func() ([]byte, error) {
		bases++
		return json.Marshal(full)
	})
	w := func(typ BlockType, v any) {
		t.Helper()
		if err := s.WriteJSON(typ, at(1), v); err != nil {
			t.Fatal(err)
		}
	}
	w(BlockMeta, sampleMeta())
	w(BlockContainers, Containers{List: full.List[:1]})
	w(BlockContainerChanges, Containers{List: full.List[1:]})
	noise := make([]byte, 1000)
	for i := range noise {
		noise[i] = byte(i*7919 + i>>3) // does not compress
	}
	for s.Rotations == 0 {
		if err := s.Write(BlockEvents, at(2), noise[:960]); err != nil {
			t.Fatal(err)
		}
	}
	stopped := full.List[1]
	stopped.Stopped, stopped.ExitCode = at(3), 137
	w(BlockContainerChanges, Containers{List: []Container{stopped}})
	if err := s.Close(at(4), "signal"); err != nil {
		t.Fatal(err)
	}
	if bases != 1 {
		t.Errorf("the base was asked for %d times, want once (one rotation)", bases)
	}
	rec := loadFile(t, path)
	if len(rec.Containers) != 2 || rec.Containers[0].Value.Changes || !reflect.DeepEqual(rec.Containers[0].Value.List, full.List) ||
		!rec.Containers[1].Value.Changes {
		t.Fatalf("the rotated file's containers blocks: %+v", rec.Containers)
	}
	h, err := rec.History()
	if err != nil {
		t.Fatal(err)
	}
	got := h.Containers()
	if len(got) != 2 || got[0].ID != full.List[0].ID || got[1].ExitCode != 137 {
		t.Errorf("history %+v", got)
	}
}

// writeTarget is a file that a planted link or hard link points to: what root must not write.
func writeTarget(t *testing.T, dir string) string {
	t.Helper()
	target := filepath.Join(dir, "shadow")
	if err := os.WriteFile(target, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return target
}

func assertTarget(t *testing.T, target string) {
	t.Helper()
	if b, err := os.ReadFile(target); err != nil || string(b) != "root:secret\n" {
		t.Errorf("the target was written through: %q, %v", b, err)
	}
}

// A symbolic link at the file is never followed, with or without overwrite; a hard link is
// replaced by name (rename), never truncated through (O_TRUNC would have emptied the target).
func TestSinkNeverWritesThroughALink(t *testing.T) {
	for _, overwrite := range []bool{false, true} {
		dir := t.TempDir()
		target, path := writeTarget(t, dir), filepath.Join(dir, "r.rec")
		os.Symlink(target, path)
		_, err := Create(path, 0, overwrite, nil)
		if err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
			t.Errorf("overwrite %v: a symlink at the file: %v", overwrite, err)
		}
		assertTarget(t, target)
		if l, err := os.Readlink(path); err != nil || l != target {
			t.Errorf("the link itself changed: %q %v", l, err)
		}
	}
	dir := t.TempDir()
	target, path := writeTarget(t, dir), filepath.Join(dir, "r.rec")
	if err := os.Link(target, path); err != nil {
		t.Fatal(err)
	}
	s, err := Create(path, 0, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.WriteJSON(BlockMeta, at(0), sampleMeta())
	if err := s.Close(at(1), "signal"); err != nil {
		t.Fatal(err)
	}
	assertTarget(t, target)
	if st, err := os.Lstat(path); err != nil || st.Mode() != 0o640 {
		t.Errorf("the new file: %v, %v", st.Mode(), err)
	}
	if rec := loadFile(t, path); rec.End == nil || rec.End.Reason != "signal" {
		t.Errorf("the new file: %+v", rec)
	}
}

// FILE.1 follows the rule of FILE: at the start a symbolic link there is refused, and another
// recording only replaced with overwrite; planted during the recording, a link ends the
// recording at the rotation with the current file complete, and its target untouched.
func TestSinkRotationNeverReplacesWhatItDidNotWrite(t *testing.T) {
	dir := t.TempDir()
	target, path := writeTarget(t, dir), filepath.Join(dir, "r.rec")
	os.Symlink(target, path+".1")
	for _, overwrite := range []bool{false, true} {
		if _, err := Create(path, 64<<10, overwrite, nil); err == nil || !strings.Contains(err.Error(), "r.rec.1 is a symbolic link") {
			t.Errorf("overwrite %v: %v", overwrite, err)
		}
	}
	os.Remove(path + ".1")
	os.WriteFile(path+".1", []byte("yesterday's recording"), 0o640)
	if _, err := Create(path, 64<<10, false, nil); err == nil || !strings.Contains(err.Error(), "r.rec.1 already exists") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("an earlier FILE.1: %v", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("the refused recording created its file")
	}
	os.Remove(path + ".1")

	s, err := Create(path, 16<<10, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.WriteJSON(BlockMeta, at(0), sampleMeta())
	noise := make([]byte, 960)
	for i := range noise {
		noise[i] = byte(i*7919 + i>>3)
	}
	for s.Rotations < 2 { // the second rotation replaces the sink's own FILE.1
		if err := s.Write(BlockEvents, at(1), noise); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(path + ".1")
	os.Symlink(target, path+".1")
	var werr error
	for werr == nil {
		werr = s.Write(BlockEvents, at(2), noise)
	}
	if !strings.Contains(werr.Error(), "r.rec.1 is a symbolic link") {
		t.Errorf("rotation onto a planted link: %v", werr)
	}
	if err := s.Close(at(3), "error: "+werr.Error()); err != nil {
		t.Fatal(err)
	}
	assertTarget(t, target)
	rec := loadFile(t, path)
	if rec.End == nil || !strings.Contains(rec.End.Reason, "symbolic link") || len(rec.Events) == 0 {
		t.Errorf("the current file: end %+v, %d events", rec.End, len(rec.Events))
	}
	if err := s.Write(BlockEvents, at(4), noise); err != ErrEnded {
		t.Errorf("a write after the end: %v", err)
	}
}
