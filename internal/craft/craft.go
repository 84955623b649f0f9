// Package craft builds the hostile recordings of issue 13: small files that say something no
// recorder writes, each aimed at what a reader computes from it. They are committed under
// recording/testdata/hostile (a test keeps those equal to what Files builds), seed the fuzz
// targets, and are read by the real binary in the command-line tests.
package craft

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"time"

	"github.com/sockscope/sockscope/recording"
)

// Start is when the crafted recordings start.
var Start = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// Netns is the one namespace they describe.
const Netns = 4026532001

// File is one crafted recording and what a reader must make of it.
type File struct {
	Name string // its file name under recording/testdata/hostile
	Data []byte
	// Hostile: the reader refuses it with one line (a *recording.FormatError wrapping Err).
	// Otherwise it is honest though odd, and reads.
	Hostile bool
	Err     error
	What    string // the attack, for test names and messages
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// block lays a block out from the format's description, so that it can say what the Writer never
// would.
func block(t recording.BlockType, flags byte, at time.Time, payload []byte) []byte {
	b := make([]byte, 16, 16+len(payload)+4)
	b[0], b[1] = byte(t), flags
	binary.LittleEndian.PutUint32(b[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(b[8:], uint64(at.UnixNano()))
	b = append(b, payload...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func header() []byte {
	b := append([]byte("\x89SCOPE\r\n"), 0, 0, 0, 0)
	binary.LittleEndian.PutUint16(b[8:], recording.Version)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func meta(interval time.Duration) []byte {
	m, _ := json.Marshal(recording.Meta{Sockscope: "crafted", Hostname: "h", Start: Start, Interval: interval, HostNetns: 4026531840})
	return block(recording.BlockMeta, 0, Start, m)
}

// sockets is an empty snapshot of Netns: enough for a reader to lay out its timeline.
func sockets(at time.Time) []byte {
	s := recording.EncodeSockets(&recording.SocketSnapshot{Netns: Netns, PortRange: [2]int{32768, 60999}})
	return block(recording.BlockSockets, 0, at, s)
}

func file(blocks ...[]byte) []byte { return bytes.Join(append([][]byte{header()}, blocks...), nil) }

// bombPart is mib MiB of zeros, DEFLATE-compressed at the best level: about mib KiB.
func bombPart(mib int) []byte {
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for range mib {
		w.Write(zeros)
	}
	w.Close()
	return z.Bytes()
}

// Bomb is a recording of two events blocks of mib MiB of zeros each, DEFLATE-compressed.
func Bomb(mib int) []byte {
	part := bombPart(mib)
	return file(meta(5*time.Second), block(recording.BlockEvents, 1, Start, part), block(recording.BlockEvents, 1, Start, part))
}

// Files are the crafted recordings.
func Files() []File {
	facts := []byte(`{"netns":[],"processes":[]}`)
	long := block(recording.BlockEvents, 0, Start, nil)[:16]
	binary.LittleEndian.PutUint32(long[4:], 1<<30)
	return []File{
		{
			Name: "interval-1ns.rec", Hostile: true, Err: recording.ErrCorrupt,
			What: "an interval of 1 ns over an hour: 3.6e12 timeline steps (230 TB)",
			Data: file(meta(time.Nanosecond), block(recording.BlockFacts, 0, Start.Add(time.Hour), facts), sockets(Start.Add(time.Hour))),
		},
		{
			Name: "clock-back-20s.rec",
			What: "a clock stepped back 20 s after the start: the recording ends before it began",
			Data: file(meta(5*time.Second), block(recording.BlockFacts, 0, Start.Add(-20*time.Second), facts), sockets(Start.Add(-20*time.Second))),
		},
		{
			Name: "deflate-bomb.rec", Hostile: true, Err: recording.ErrInflate,
			What: "two events blocks of 96 MiB of zeros, DEFLATE-compressed into 196 KB",
			Data: Bomb(96),
		},
		{
			Name: "length-1gib.rec", Hostile: true, Err: recording.ErrCorrupt,
			What: "a block that declares 1 GiB of payload",
			Data: file(meta(5*time.Second), long),
		},
	}
}
