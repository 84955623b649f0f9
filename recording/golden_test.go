package recording

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/sockets"
	"github.com/sockscope/sockscope/events/trace"
)

// goldenV2 is a version 2 recording holding every block type, written by sockscope 7352828,
// when the syscall counts block was the JSON of loader.SyscallSnapshot (Go's default field
// names, the key embedded, the drop counters a positional array) and the event and socket
// blocks were the kernel's records as they were then. It is never rewritten: it is how files
// recorded before the recording had wire types of its own look, and they must still read.
const goldenV2 = "testdata/golden-v2.rec"

// goldenBlock is one block of goldenV2 and the value it holds.
type goldenBlock struct {
	typ   BlockType
	at    time.Time
	value any // Meta, Containers, Facts, []trace.Event, SocketSnapshot, SyscallCounts, Lost, Stacks, End
}

var (
	goldenConnRefused = trace.Event{Mono: 5_000_000_000, Latency: 180 * time.Microsecond, Netns: webNetns, Pid: 2417,
		Errno: syscall.ECONNREFUSED, Sport: 0, Dport: 5432, Saddr: netip.IPv4Unspecified(), Daddr: dbAddr,
		Comm: comm("nginx"), Family: syscall.AF_INET, Kind: trace.KindConnect}
	goldenEstablished = trace.Event{Mono: 5_250_000_000, PrevState: 2 * time.Millisecond, Latency: 2 * time.Millisecond, Netns: webNetns, Pid: 2417,
		Sport: 40001, Dport: 5432, Saddr: webAddr, Daddr: dbAddr, Comm: comm("nginx"), Family: syscall.AF_INET,
		OldState: events.StateSynSent, NewState: events.StateEstablished, Kind: trace.KindState | trace.KindConnect}
	goldenReset = trace.Event{Mono: 5_500_000_000, PrevState: 250 * time.Millisecond, Netns: cliNetns, Pid: 77,
		Sport: 51000, Dport: 443, Saddr: netip.MustParseAddr("2001:db8::2"), Daddr: docAddr, Comm: comm("curl"), Family: syscall.AF_INET6,
		OldState: events.StateEstablished, NewState: events.StateClose, Kind: trace.KindState}

	goldenDB = Container{ID: "3f4e8a1b2c9d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f", Name: "db", Image: "postgres:16",
		Labels: map[string]string{"com.docker.compose.service": "db"}, Pid: 2301, Netns: webNetns, Runtime: "docker", Started: t0}
	goldenWeb = Container{ID: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", Name: "web", Image: "nginx:1.27",
		Pid: 2417, Netns: webNetns, Runtime: "containerd", K8sNamespace: "shop", K8sPod: "web-7d9f", PodUID: "0b9e7c52-5d1f-4c1e-9d43-2f0c3a6f1b11",
		Started: t0.Add(time.Second), Selected: true}
	goldenWebStopped = func() Container {
		c := goldenWeb
		c.Stopped, c.ExitCode = at(7), 137
		return c
	}()

	goldenSockets = SocketSnapshot{Netns: webNetns, PortRange: [2]int{32768, 60999}, TWReuse: 2,
		Records: bytes.Join([][]byte{
			sockRecord(9001, 999, 0, 0, 5432, 0, netip.IPv4Unspecified(), netip.IPv4Unspecified(), 2, 10, 0, 0),
			sockRecord(9002, 999, 12, 3, 5432, 40001, dbAddr, webAddr, 2, 1, 2, 1),
			sockRecord(0, 0, 0, 0, 40000, 5432, webAddr, dbAddr, 2, 6, 3, 0),
		}, nil),
		Owners: bytes.Join([][]byte{ownerRecord(9001, 2301, "postgres"), ownerRecord(9002, 2305, "postgres: app")}, nil)}
	// goldenSocketsDecoded is goldenSockets as `sockscope sockets -r` shows it.
	goldenSocketsDecoded = []sockets.Socket{
		{Netns: webNetns, State: events.StateListen, Family: 2, Saddr: netip.IPv4Unspecified(), Sport: 5432, Daddr: netip.IPv4Unspecified(),
			UID: 999, Inode: 9001, Pid: 2301, Comm: "postgres"},
		{Netns: webNetns, State: events.StateEstablished, Family: 2, Saddr: dbAddr, Sport: 5432, Daddr: webAddr, Dport: 40001,
			RxQueue: 12, TxQueue: 3, Timer: 2, Retransmits: 1, UID: 999, Inode: 9002, Pid: 2305, Comm: "postgres: app"},
		{Netns: webNetns, State: events.StateTimeWait, Family: 2, Saddr: webAddr, Sport: 40000, Daddr: dbAddr, Dport: 5432, Timer: 3},
	}

	goldenFacts = Facts{
		Netns: []NetnsFacts{
			{Netns: webNetns, PortRange: [2]int{32768, 60999}, TWReuse: 2, Somaxconn: 4096},
			{Netns: cliNetns, PortRange: [2]int{1024, 65535}, TWReuse: 1, Somaxconn: 128},
		},
		Processes: []Process{
			{Pid: 2301, Netns: webNetns, Comm: "postgres", NofileSoft: 1024, NofileHard: 524288, Fds: 17},
			{Pid: 2417, Netns: webNetns, Comm: "nginx", NofileSoft: 1024, NofileHard: 1024, Fds: 1019},
			{Pid: 77, Netns: cliNetns, Comm: "curl", NofileSoft: -1, NofileHard: -1, Fds: 5},
		},
	}

	goldenStacks = Stacks{Syscalls: []string{"connect", "openat"}, RatePerCPU: 100, Matched: 4210, Sampled: 380, Lost: 3,
		NotUnwound: map[string]uint64{"[vdso]": 2, "nginx": 1},
		List: []StackCount{
			{Netns: webNetns, Comm: "nginx", Syscall: "connect", Frames: []string{"__libc_connect", "ngx_event_connect_peer", "ngx_http_upstream_connect"}, Count: 211},
			{Netns: webNetns, Comm: "postgres", Syscall: "openat", Frames: []string{"__libc_open64", "BasicOpenFilePerm"}, Truncated: true, Count: 169},
		}}
)

var (
	goldenNginx    = SyscallKey{Netns: webNetns, Tgid: 2417, Nr: 42, Comm: "nginx"}     // connect
	goldenPostgres = SyscallKey{Netns: webNetns, Tgid: 2301, Nr: 257, Comm: "postgres"} // openat
)

// goldenSyscalls are the three syscall blocks: nothing counted yet (the snapshot's slices are
// nil: "null" in the file), then two cumulative snapshots, the second with rows refused over
// the namespace's budget.
var goldenSyscalls = []SyscallCounts{
	{},
	{
		Counts: []SyscallCount{
			{SyscallKey: goldenNginx, Count: 120, Errors: 9, LatTotal: 3 * time.Millisecond, LatMax: 410 * time.Microsecond},
			{SyscallKey: goldenPostgres, Count: 40, LatTotal: 900 * time.Microsecond, LatMax: 60 * time.Microsecond},
		},
		Errors:  []SyscallErrors{{SyscallKey: goldenNginx, Errno: syscall.ECONNREFUSED, Count: 9}},
		Paths:   []SyscallPath{{SyscallKey: goldenPostgres, Path: "/var/lib/postgresql/data/base/16384", Count: 40}},
		Dropped: SyscallDrops{CountsFull: 0, ErrorsFull: 1, PathsFull: 2},
	},
	{
		Counts: []SyscallCount{
			{SyscallKey: goldenNginx, Count: 260, Errors: 31, LatTotal: 7 * time.Millisecond, LatMax: 2 * time.Millisecond},
			{SyscallKey: goldenPostgres, Count: 95, Errors: 1, LatTotal: 2 * time.Millisecond, LatMax: 75 * time.Microsecond},
		},
		Errors: []SyscallErrors{
			{SyscallKey: goldenNginx, Errno: syscall.ECONNREFUSED, Count: 30},
			{SyscallKey: goldenNginx, Errno: syscall.EMFILE, Count: 1},
			{SyscallKey: goldenPostgres, Errno: syscall.ENOENT, Count: 1},
		},
		Paths:      []SyscallPath{{SyscallKey: goldenPostgres, Path: "/var/lib/postgresql/data/base/16384", Count: 95}},
		Dropped:    SyscallDrops{CountsFull: 3, ErrorsFull: 0, PathsFull: 7},
		OverBudget: 4,
	},
}

func goldenMeta() Meta {
	m := sampleMeta()
	m.Paths = true
	return m
}

// goldenBlocks are goldenV2's blocks in order.
func goldenBlocks() []goldenBlock {
	return []goldenBlock{
		{BlockMeta, at(0), goldenMeta()},
		{BlockContainers, at(1), Containers{List: []Container{goldenDB, goldenWeb}}},
		{BlockFacts, at(2), goldenFacts},
		{BlockSyscalls, at(2), goldenSyscalls[0]},
		{BlockLost, at(2), Lost{}},
		{BlockEvents, at(5), []trace.Event{goldenConnRefused, goldenEstablished, goldenReset}},
		{BlockSockets, at(6), goldenSockets},
		{BlockFacts, at(6), goldenFacts},
		{BlockSyscalls, at(6), goldenSyscalls[1]},
		{BlockStacks, at(6), goldenStacks},
		{BlockLost, at(6), Lost{RingFull: 5}},
		{BlockContainerChanges, at(7), Containers{List: []Container{goldenWebStopped}}},
		{BlockSyscalls, at(8), goldenSyscalls[2]},
		{BlockLost, at(8), Lost{RingFull: 9, Nested: 2}},
		{BlockEnd, at(8), End{Reason: "signal"}},
	}
}

// encode is a golden block's payload as the recorder writes it.
func (g goldenBlock) encode(t testing.TB) []byte {
	switch v := g.value.(type) {
	case []trace.Event:
		var b []byte
		for i := range v {
			b = append(b, trace.EncodeEvent(&v[i])...)
		}
		return b
	case SocketSnapshot:
		return EncodeSockets(&v)
	}
	return mustJSON(t, g.value)
}

// TestARecordingWrittenBeforeWireTypesReadsToTheSameValues loads goldenV2 and compares every
// value with what was written.
func TestARecordingWrittenBeforeWireTypesReadsToTheSameValues(t *testing.T) {
	// The binary blocks' records, as version 2 lays them out: the events recordings keep, and
	// the kernel's socket and owner records, stored as the iterator gives them. Another size is
	// a new format version, whose reader still reads these.
	if trace.RecordSize != 96 || sockets.SocketRecordSize != 56 || sockets.OwnerRecordSize != 24 {
		t.Errorf("event, socket and owner records are %d, %d and %d bytes; version 2 files hold 96, 56 and 24",
			trace.RecordSize, sockets.SocketRecordSize, sockets.OwnerRecordSize)
	}
	data, err := os.ReadFile(goldenV2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want := &Recording{
		Meta:    goldenMeta(),
		Events:  []trace.Event{goldenConnRefused, goldenEstablished, goldenReset},
		Sockets: []SocketSnapshot{goldenSockets},
		Syscalls: []Timed[SyscallCounts]{
			{at(2), goldenSyscalls[0]}, {at(6), goldenSyscalls[1]}, {at(8), goldenSyscalls[2]},
		},
		Facts:  []Timed[Facts]{{at(2), goldenFacts}, {at(6), goldenFacts}},
		Stacks: []Timed[Stacks]{{at(6), goldenStacks}},
		Containers: []Timed[Containers]{
			{at(1), Containers{List: []Container{goldenDB, goldenWeb}}},
			{at(7), Containers{List: []Container{goldenWebStopped}, Changes: true}},
		},
		Lost: Lost{RingFull: 9, Nested: 2},
		End:  &End{Reason: "signal"},
		Last: at(8),
		Size: int64(len(data)),
	}
	want.Sockets[0].Time = at(6)
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"meta", got.Meta, want.Meta},
		{"events", got.Events, want.Events},
		{"sockets", got.Sockets, want.Sockets},
		{"syscalls", got.Syscalls, want.Syscalls},
		{"facts", got.Facts, want.Facts},
		{"stacks", got.Stacks, want.Stacks},
		{"containers", got.Containers, want.Containers},
		{"lost", got.Lost, want.Lost},
		{"end", got.End, want.End},
		{"last", got.Last, want.Last},
		{"size", got.Size, want.Size},
		{"rotations", got.Rotations, 0},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.what, c.got, c.want)
		}
	}
	socks, err := got.Sockets[0].Decode()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(socks, goldenSocketsDecoded) {
		t.Errorf("decoded sockets:\n got %+v\nwant %+v", socks, goldenSocketsDecoded)
	}
}

// TestTheWriterWritesTheGoldenBlocksByteForByte encodes goldenV2's values as the recorder does
// and compares each block with the file's, decompressed: what sockscope writes today, an old
// sockscope reads. (Compressed bytes may change with the Go release; what they hold may not.)
func TestTheWriterWritesTheGoldenBlocksByteForByte(t *testing.T) {
	data, err := os.ReadFile(goldenV2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 2 {
		t.Fatalf("golden file is version %d, want 2", r.Version)
	}
	blocks := goldenBlocks()
	compressed := 0
	for i := 0; ; i++ {
		b, err := r.Next()
		if err == io.EOF {
			if i != len(blocks) {
				t.Fatalf("the file has %d blocks, want %d", i, len(blocks))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(blocks) {
			t.Fatalf("block %d (%s): more blocks than the %d written", i, b.Type, len(blocks))
		}
		g := blocks[i]
		if b.flags&flagDeflate != 0 {
			compressed++
		}
		if b.Type != g.typ || b.Time != g.at.UnixNano() {
			t.Errorf("block %d is a %s block at %d, want %s at %d", i, b.Type, b.Time, g.typ, g.at.UnixNano())
		}
		if want := g.encode(t); !bytes.Equal(b.Payload, want) {
			t.Errorf("block %d (%s):\n file %q\n  now %q", i, b.Type, b.Payload, want)
		}
	}
	if compressed == 0 {
		t.Error("no block of the golden file is compressed: the test would not read DEFLATE")
	}
	// The syscall counts as loader.SyscallSnapshot encoded them, literally: SyscallCounts
	// writes the same.
	var found int
	for _, g := range blocks {
		if g.typ == BlockSyscalls {
			found++
		}
	}
	if found != 3 {
		t.Fatalf("%d syscall blocks, want 3", found)
	}
	if got, want := string(blocks[3].encode(t)), `{"Counts":null,"Errors":null,"Paths":null,"Dropped":[0,0,0]}`; got != want {
		t.Errorf("empty syscall counts encode as\n %s\nwant\n %s", got, want)
	}
	if got, want := string(blocks[12].encode(t)), `{"Counts":[`+
		`{"Netns":4026532500,"Tgid":2417,"Nr":42,"Comm":"nginx","Count":260,"Errors":31,"LatTotal":7000000,"LatMax":2000000},`+
		`{"Netns":4026532500,"Tgid":2301,"Nr":257,"Comm":"postgres","Count":95,"Errors":1,"LatTotal":2000000,"LatMax":75000}],`+
		`"Errors":[{"Netns":4026532500,"Tgid":2417,"Nr":42,"Comm":"nginx","Errno":111,"Count":30},`+
		`{"Netns":4026532500,"Tgid":2417,"Nr":42,"Comm":"nginx","Errno":24,"Count":1},`+
		`{"Netns":4026532500,"Tgid":2301,"Nr":257,"Comm":"postgres","Errno":2,"Count":1}],`+
		`"Paths":[{"Netns":4026532500,"Tgid":2301,"Nr":257,"Comm":"postgres","Path":"/var/lib/postgresql/data/base/16384","Count":95}],`+
		`"Dropped":[3,0,7],"OverBudget":4}`; got != want {
		t.Errorf("syscall counts encode as\n %s\nwant\n %s", got, want)
	}
}
