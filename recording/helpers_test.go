package recording

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/sockets"
	"github.com/sockscope/sockscope/events/trace"
)

// t0 is when the test recordings start; block i of a fixture is written at at(i).
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func at(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }

const (
	hostNetns = 4026531840
	webNetns  = 4026532500
	cliNetns  = 4026532501
)

var (
	webAddr = netip.MustParseAddr("172.17.0.2")
	dbAddr  = netip.MustParseAddr("172.17.0.3")
	docAddr = netip.MustParseAddr("2001:db8::1")
)

// eventRecord builds a raw struct event (bpf/trace.h).
func eventRecord(mono, prev, lat uint64, netns, pid uint32, errno int32, sport, dport uint16, saddr, daddr netip.Addr, name string, family, oldS, newS, kind uint8) []byte {
	return trace.EncodeEvent(&trace.Event{Mono: mono, PrevState: time.Duration(prev), Latency: time.Duration(lat), Netns: netns, Pid: pid,
		Errno: syscall.Errno(errno), Sport: sport, Dport: dport, Saddr: saddr, Daddr: daddr, Comm: comm(name),
		Family: family, OldState: events.State(oldS), NewState: events.State(newS), Kind: trace.Kind(kind)})
}

// sockRecord builds a raw struct sock_record (bpf/sockets.h).
func sockRecord(inode, uid, rx, tx uint32, sport, dport uint16, saddr, daddr netip.Addr, family, state, timer, retrans uint8) []byte {
	return sockets.EncodeSocket(&sockets.Socket{Inode: inode, UID: uid, RxQueue: rx, TxQueue: tx, Sport: sport, Dport: dport,
		Saddr: saddr, Daddr: daddr, Family: family, State: events.State(state), Timer: timer, Retransmits: retrans})
}

// ownerRecord builds a raw struct owner_record.
func ownerRecord(inode, pid uint32, comm string) []byte {
	return sockets.EncodeOwner(inode, sockets.Owner{Pid: pid, Comm: comm})
}

func comm(s string) (c [16]byte) {
	copy(c[:], s)
	return c
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawBlock encodes one block from the format's description, independently of Writer, so that
// tests can write blocks the Writer never would (bad flags, bad payloads with a good checksum).
func rawBlock(typ BlockType, flags byte, unixNano int64, payload []byte) []byte {
	b := make([]byte, 16, 16+len(payload)+4)
	b[0], b[1] = byte(typ), flags
	binary.LittleEndian.PutUint32(b[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(b[8:], uint64(unixNano))
	b = append(b, payload...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// rawHeader is the 16-byte file header for a version.
func rawHeader(version uint16) []byte {
	b := append([]byte("\x89SCOPE\r\n"), 0, 0, 0, 0)
	binary.LittleEndian.PutUint16(b[8:], version)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// rawFile is a header followed by blocks.
func rawFile(blocks ...[]byte) []byte {
	return bytes.Join(append([][]byte{rawHeader(Version)}, blocks...), nil)
}

// metaBlock is a stored meta block for rawFile.
func metaBlock(t testing.TB) []byte {
	return rawBlock(BlockMeta, 0, at(0).UnixNano(), mustJSON(t, sampleMeta()))
}

// span is where one block lies in a file, found by walking the lengths in the block headers.
type span struct {
	typ        BlockType
	flags      byte
	start, end int // end is the start of the next block
}

func scanBlocks(t testing.TB, data []byte) []span {
	t.Helper()
	var out []span
	for off := 16; off < len(data); {
		if len(data)-off < 16 {
			t.Fatalf("block header at %d is cut short", off)
		}
		n := int(binary.LittleEndian.Uint32(data[off+4:]))
		end := off + 16 + n + 4
		if end > len(data) {
			t.Fatalf("block at %d runs past the end", off)
		}
		out = append(out, span{BlockType(data[off]), data[off+1], off, end})
		off = end
	}
	return out
}

// formatErrorMismatch says how err differs from sentinel wrapped in a *FormatError at offset
// ("" when it does not).
func formatErrorMismatch(err error, sentinel error, offset int64) string {
	if !errors.Is(err, sentinel) {
		return fmt.Sprintf("got error %v, want %v", err, sentinel)
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		return fmt.Sprintf("error %v (%T) is not a *FormatError", err, err)
	}
	if fe.Offset != offset {
		return fmt.Sprintf("error %q at offset %d, want offset %d", err, fe.Offset, offset)
	}
	return ""
}

// wantFormatError checks that err wraps sentinel in a *FormatError at offset.
func wantFormatError(t testing.TB, err error, sentinel error, offset int64) *FormatError {
	t.Helper()
	if m := formatErrorMismatch(err, sentinel, offset); m != "" {
		t.Fatal(m)
	}
	var fe *FormatError
	errors.As(err, &fe)
	return fe
}

func sampleMeta() Meta {
	return Meta{
		Sockscope:   "0.9.0",
		Hostname:    "build-7",
		Kernel:      "6.8.0-45-generic",
		Arch:        "amd64",
		Start:       t0,
		ClockOffset: 1741944000123456789,
		Interval:    2 * time.Second,
		HostNetns:   hostNetns,
		Scope:       "containers web, db",
		NetnsNames:  map[uint32]string{webNetns: "web"},
		Filtered:    true,
		Latency:     true,
	}
}

func sampleContainers(gen int) Containers {
	c := Containers{List: []Container{
		{ID: "3f4e8a1b2c9d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f", Name: "db", Image: "postgres:16",
			Labels: map[string]string{"com.docker.compose.service": "db"}, Pid: 2301, Netns: webNetns, Started: t0},
		{ID: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", Name: "web", Image: "nginx:1.27",
			Pid: 2417, Netns: webNetns, Started: t0.Add(time.Second), Selected: true},
	}}
	if gen > 0 {
		c.List[1].Stopped = t0.Add(time.Duration(gen) * time.Minute)
		c.List[1].ExitCode = 137 + gen
	}
	return c
}

// sampleFacts is large and repetitive enough to be stored compressed.
func sampleFacts(gen int) Facts {
	f := Facts{Netns: []NetnsFacts{
		{Netns: webNetns, PortRange: [2]int{32768, 60999}, TWReuse: 2, Somaxconn: 4096},
		{Netns: cliNetns, PortRange: [2]int{1024, 65535}, TWReuse: 1, Somaxconn: 128 + gen},
	}}
	for i := range 20 {
		f.Processes = append(f.Processes, Process{Pid: uint32(2300 + i), Netns: webNetns, Comm: "postgres",
			NofileSoft: 1024, NofileHard: 524288, Fds: 10 + i + gen})
	}
	f.Processes = append(f.Processes, Process{Pid: 1, Netns: cliNetns, Comm: "sh", NofileSoft: -1, NofileHard: -1, Fds: 3})
	return f
}

var sampleEvents = []struct {
	raw  []byte
	want trace.Event
}{
	{
		eventRecord(1_000_000, 2000, 3000, webNetns, 2417, 0, 40001, 5432, webAddr, dbAddr, "nginx", 2, 2, 1, 3),
		trace.Event{Mono: 1_000_000, PrevState: 2 * time.Microsecond, Latency: 3 * time.Microsecond, Netns: webNetns, Pid: 2417,
			Sport: 40001, Dport: 5432, Saddr: webAddr, Daddr: dbAddr, Comm: comm("nginx"), Family: 2,
			OldState: events.StateSynSent, NewState: events.StateEstablished, Kind: trace.KindState | trace.KindConnect},
	},
	{
		eventRecord(2_000_000, 0, 700, cliNetns, 77, 99, 0, 443, netip.IPv6Unspecified(), docAddr, "curl", 10, 0, 0, 2),
		trace.Event{Mono: 2_000_000, Latency: 700, Netns: cliNetns, Pid: 77, Errno: syscall.EADDRNOTAVAIL, Dport: 443,
			Saddr: netip.IPv6Unspecified(), Daddr: docAddr, Comm: comm("curl"), Family: 10, Kind: trace.KindConnect},
	},
	{
		eventRecord(3_000_000, 60_000_000, 0, webNetns, 0, 0, 5432, 40001, dbAddr, webAddr, "", 2, 5, 6, 1),
		trace.Event{Mono: 3_000_000, PrevState: 60 * time.Millisecond, Netns: webNetns, Sport: 5432, Dport: 40001,
			Saddr: dbAddr, Daddr: webAddr, Family: 2, OldState: events.StateFinWait2, NewState: events.StateTimeWait, Kind: trace.KindState},
	},
}

// sampleSockets are two snapshots: the web namespace with a listener, a connection, a
// time-wait socket without owner and an IPv6 listener; the client namespace empty.
func sampleSockets() ([]SocketSnapshot, [][]sockets.Socket) {
	any4, any6 := netip.IPv4Unspecified(), netip.IPv6Unspecified()
	web := SocketSnapshot{
		Netns: webNetns, PortRange: [2]int{32768, 60999}, TWReuse: 2,
		Records: bytes.Join([][]byte{
			sockRecord(9001, 999, 0, 0, 5432, 0, any4, any4, 2, 10, 0, 0),
			sockRecord(9002, 999, 12, 3, 5432, 40001, dbAddr, webAddr, 2, 1, 2, 1),
			sockRecord(0, 0, 0, 0, 40000, 5432, webAddr, dbAddr, 2, 6, 3, 0),
			sockRecord(9003, 101, 0, 0, 80, 0, any6, any6, 10, 10, 0, 0),
		}, nil),
		Owners: bytes.Join([][]byte{
			ownerRecord(9001, 2301, "postgres"),
			ownerRecord(9002, 2305, "postgres: app"),
			ownerRecord(9001, 2400, "pg_dump"), // shares the listener's file: the first owner wins
			ownerRecord(9003, 2417, "nginx"),
		}, nil),
	}
	cli := SocketSnapshot{Netns: cliNetns, PortRange: [2]int{1024, 65535}, TWReuse: -1}
	want := [][]sockets.Socket{
		{
			{Netns: webNetns, State: events.StateListen, Family: 2, Saddr: any4, Sport: 5432, Daddr: any4, UID: 999, Inode: 9001, Pid: 2301, Comm: "postgres"},
			{Netns: webNetns, State: events.StateEstablished, Family: 2, Saddr: dbAddr, Sport: 5432, Daddr: webAddr, Dport: 40001,
				RxQueue: 12, TxQueue: 3, Timer: 2, Retransmits: 1, UID: 999, Inode: 9002, Pid: 2305, Comm: "postgres: app"},
			{Netns: webNetns, State: events.StateTimeWait, Family: 2, Saddr: webAddr, Sport: 40000, Daddr: dbAddr, Dport: 5432, Timer: 3},
			{Netns: webNetns, State: events.StateListen, Family: 10, Saddr: any6, Sport: 80, Daddr: any6, UID: 101, Inode: 9003, Pid: 2417, Comm: "nginx"},
		},
		{},
	}
	return []SocketSnapshot{web, cli}, want
}

func sampleSyscalls(gen uint64) SyscallCounts {
	key := SyscallKey{Netns: webNetns, Tgid: 2417, Nr: 42, Comm: "nginx"}
	return SyscallCounts{
		Counts: []SyscallCount{
			{SyscallKey: key, Count: 100 * gen, Errors: 3 * gen, LatTotal: time.Duration(gen) * time.Millisecond, LatMax: 250 * time.Microsecond},
			{SyscallKey: SyscallKey{Netns: webNetns, Tgid: 2301, Nr: 257, Comm: "postgres"}, Count: 7 * gen},
		},
		Errors:  []SyscallErrors{{SyscallKey: key, Errno: syscall.EADDRNOTAVAIL, Count: 3 * gen}},
		Paths:   []SyscallPath{{SyscallKey: SyscallKey{Netns: webNetns, Tgid: 2301, Nr: 257, Comm: "postgres"}, Path: "/var/lib/postgresql/data/base", Count: 7 * gen}},
		Dropped: SyscallDrops{ErrorsFull: gen, PathsFull: 2 * gen},
	}
}

// fixture is a complete recording with every block type, and what Load should make of it.
type fixture struct {
	data   []byte
	types  []BlockType // of each block, in order
	events []int       // events in each block
	want   *Recording
	socks  [][]sockets.Socket // the decoded sockets of want.Sockets
}

func sampleFixture(t testing.TB) fixture {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	snaps, socks := sampleSockets()
	var fx fixture
	i := 0
	write := func(typ BlockType, payload []byte, nEvents int) {
		t.Helper()
		if err := w.WriteBlock(typ, at(i).UnixNano(), payload); err != nil {
			t.Fatal(err)
		}
		fx.types = append(fx.types, typ)
		fx.events = append(fx.events, nEvents)
		i++
	}
	write(BlockMeta, mustJSON(t, sampleMeta()), 0)
	write(BlockContainers, mustJSON(t, sampleContainers(0)), 0)
	write(BlockFacts, mustJSON(t, sampleFacts(0)), 0)
	write(BlockEvents, sampleEvents[0].raw, 1)
	write(BlockEvents, slices.Concat(sampleEvents[1].raw, sampleEvents[2].raw, sampleEvents[0].raw), 3)
	write(BlockSockets, EncodeSockets(&snaps[0]), 0)
	write(BlockSockets, EncodeSockets(&snaps[1]), 0)
	write(BlockSyscalls, mustJSON(t, sampleSyscalls(1)), 0)
	write(BlockLost, mustJSON(t, Lost{RingFull: 5}), 0)
	write(BlockContainers, mustJSON(t, sampleContainers(1)), 0)
	write(BlockFacts, mustJSON(t, sampleFacts(1)), 0)
	write(BlockSyscalls, mustJSON(t, sampleSyscalls(2)), 0)
	write(BlockLost, mustJSON(t, Lost{RingFull: 9, Nested: 2}), 0)
	write(BlockEnd, mustJSON(t, End{Reason: "duration"}), 0)
	if w.Size() != int64(buf.Len()) {
		t.Fatalf("Writer.Size() = %d, wrote %d bytes", w.Size(), buf.Len())
	}

	snaps[0].Time, snaps[1].Time = at(5), at(6)
	fx.data = buf.Bytes()
	fx.socks = socks
	fx.want = &Recording{
		Meta:       sampleMeta(),
		Events:     []trace.Event{sampleEvents[0].want, sampleEvents[1].want, sampleEvents[2].want, sampleEvents[0].want},
		Sockets:    snaps,
		Syscalls:   []Timed[SyscallCounts]{{at(7), sampleSyscalls(1)}, {at(11), sampleSyscalls(2)}},
		Facts:      []Timed[Facts]{{at(2), sampleFacts(0)}, {at(10), sampleFacts(1)}},
		Containers: []Timed[Containers]{{at(1), sampleContainers(0)}, {at(9), sampleContainers(1)}},
		Lost:       Lost{RingFull: 9, Nested: 2},
		End:        &End{Reason: "duration"},
		Last:       at(13),
		Size:       int64(buf.Len()),
	}
	return fx
}
