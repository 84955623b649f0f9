package trace

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events"
)

// record builds a raw struct event the way the kernel lays it out.
func record(ts, prev, lat uint64, netns, pid uint32, err int32, sport, dport uint16, saddr, daddr netip.Addr, comm string, family, oldS, newS, kind uint8) []byte {
	b := make([]byte, RecordSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], ts)
	le.PutUint64(b[8:], prev)
	le.PutUint64(b[16:], lat)
	le.PutUint32(b[24:], netns)
	le.PutUint32(b[28:], pid)
	le.PutUint32(b[32:], uint32(err))
	le.PutUint16(b[36:], sport)
	le.PutUint16(b[38:], dport)
	copy(b[40:56], saddr.AsSlice())
	copy(b[56:72], daddr.AsSlice())
	copy(b[72:88], comm)
	b[88], b[89], b[90], b[91] = family, oldS, newS, kind
	return b
}

var (
	v4a = netip.MustParseAddr("127.0.0.1")
	v4b = netip.MustParseAddr("127.0.0.2")
	v6  = netip.MustParseAddr("::1")
)

func TestDecode(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want Event
	}{
		{
			"ipv4 transition that concluded a connect",
			record(100, 2000, 3000, 4026531840, 42, 0, 40000, 8080, v4a, v4b, "nginx", 2, 2, 1, 3),
			Event{Mono: 100, PrevState: 2 * time.Microsecond, Latency: 3 * time.Microsecond, Netns: 4026531840, Pid: 42,
				Sport: 40000, Dport: 8080, Saddr: v4a, Daddr: v4b, Family: 2, OldState: 2, NewState: 1, Kind: KindState | KindConnect},
		},
		{
			"ipv6 connect failure without a transition",
			record(5, 0, 700, 7, 9, 99, 0, 443, netip.IPv6Unspecified(), v6, "curl", 10, 0, 0, 2),
			Event{Mono: 5, Latency: 700, Netns: 7, Pid: 9, Errno: syscall.EADDRNOTAVAIL, Dport: 443,
				Saddr: netip.IPv6Unspecified(), Daddr: v6, Family: 10, Kind: KindConnect},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got Event
			if err := Decode(c.in, &got); err != nil {
				t.Fatal(err)
			}
			comm := got.CommString()
			got.Comm = [16]byte{}
			if got != c.want {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
			if comm != strings.TrimRight(string(c.in[72:88]), "\x00") {
				t.Errorf("comm %q", comm)
			}
			// The encoder is the decoder's inverse, byte for byte against the kernel's layout.
			got.Comm = [16]byte(c.in[72:88])
			if enc := EncodeEvent(&got); !bytes.Equal(enc, c.in) {
				t.Errorf("EncodeEvent:\n got %x\nwant %x", enc, c.in)
			}
		})
	}
	var e Event
	if err := Decode(make([]byte, RecordSize-1), &e); err != ErrShortRecord {
		t.Errorf("short record: got %v, want ErrShortRecord", err)
	}
}

func TestStateNames(t *testing.T) {
	cases := []struct {
		in   string
		want events.State
		ok   bool
	}{
		{"ESTABLISHED", 1, true}, {"time_wait", 6, true}, {"time-wait", 6, true}, {"TIMEWAIT", 6, true},
		{"syn-received", 3, true}, {"SYN_RECV", 3, true}, {"listen", 10, true}, {"close", 7, true},
		{"CLOSED", 0, false}, {"", 0, false}, {"FOO", 0, false},
	}
	for _, c := range cases {
		got, ok := events.ParseState(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseState(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	for s, want := range map[events.State]string{0: "", 1: "ESTABLISHED", 7: "CLOSE", 10: "LISTEN", 12: "NEW_SYN_RECV", 99: "99"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d) = %q, want %q", s, got, want)
		}
	}
	if n := len(events.StateNames()); n != 13 {
		t.Errorf("%d state names, want 13", n)
	}
}

func TestErrnoNames(t *testing.T) {
	for e, want := range map[syscall.Errno]string{
		0: "", syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL", syscall.ECONNREFUSED: "ECONNREFUSED",
		syscall.ETIMEDOUT: "ETIMEDOUT", syscall.ENETUNREACH: "ENETUNREACH", syscall.EHOSTUNREACH: "EHOSTUNREACH",
		syscall.ECONNABORTED: "ECONNABORTED", syscall.EMFILE: "EMFILE", 200: "errno 200",
	} {
		if got := events.ErrnoName(e); got != want {
			t.Errorf("ErrnoName(%d) = %q, want %q", int(e), got, want)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	var e Event
	if err := Decode(record(0, 1500, 2500, 4026532000, 31337, 0, 40000, 8080, v4a, v4b, "node", 2, 2, 1, 3), &e); err != nil {
		t.Fatal(err)
	}
	wall := time.Date(2026, 11, 21, 22, 53, 1, 123456789, time.UTC)
	f := NewFormatter(events.ClockWithOffset(wall.UnixNano()))
	got := string(f.AppendJSON(nil, &e, events.Name{Name: "web", ID: "0123456789ab"}))
	want := `{"time":"2026-11-21T22:53:01.123456789Z","type":"state","container":"web","container_id":"0123456789ab","k8s_namespace":"","k8s_pod":"","netns":4026532000,"pid":31337,"comm":"node","family":"ipv4","saddr":"127.0.0.1","sport":40000,"daddr":"127.0.0.2","dport":8080,"old_state":"SYN_SENT","new_state":"ESTABLISHED","prev_state_us":1,"errno":"","latency_us":0,"latency_ns":0}
{"time":"2026-11-21T22:53:01.123456789Z","type":"connect","container":"web","container_id":"0123456789ab","k8s_namespace":"","k8s_pod":"","netns":4026532000,"pid":31337,"comm":"node","family":"ipv4","saddr":"127.0.0.1","sport":40000,"daddr":"127.0.0.2","dport":8080,"old_state":"SYN_SENT","new_state":"ESTABLISHED","prev_state_us":0,"errno":"","latency_us":2,"latency_ns":2500}
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	// Any byte in a command name must still give valid JSON.
	if err := Decode(record(0, 0, 0, 1, 1, 111, 1, 2, v6, v6, "a\"b\\c\n\x01\xff", 10, 2, 7, 3), &e); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(f.AppendJSON(nil, &e, events.Name{}))), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		if m["type"] == "connect" && m["errno"] != "ECONNREFUSED" {
			t.Errorf("errno %v, want ECONNREFUSED", m["errno"])
		}
		if m["comm"] != "a\"b\\c\n\x01\ufffd" {
			t.Errorf("comm %q", m["comm"])
		}
	}
}

func TestAppendTable(t *testing.T) {
	time.Local = time.UTC
	wall := time.Date(2026, 11, 21, 22, 53, 1, 123456789, time.UTC)
	f := NewFormatter(events.ClockWithOffset(wall.UnixNano()))
	var e, e2 Event
	Decode(record(0, 1500, 0, 1, 0, 0, 8080, 40000, v4a, v4b, "", 2, 3, 1, 1), &e)
	Decode(record(0, 0, 31000, 1, 77, 99, 0, 8080, netip.IPv4Unspecified(), v4a, "nginx", 2, 0, 0, 2), &e2)
	got := string(AppendTableHeader(nil)) + string(f.AppendTableRow(nil, &e, "web")) + string(f.AppendTableRow(nil, &e2, "4026532000"))
	want := "" +
		"TIME         CONTAINER            PID COMM            LOCAL                 REMOTE                OLDSTATE    NEWSTATE      PREV_MS CONNECT\n" +
		"22:53:01.123 web                    - -               127.0.0.1:8080        127.0.0.2:40000       SYN_RECV    ESTABLISHED     0.001\n" +
		"22:53:01.123 4026532000            77 nginx           0.0.0.0:0             127.0.0.1:8080        -           -                   - EADDRNOTAVAIL 0.031ms\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFormattingDoesNotAllocate(t *testing.T) {
	var e Event
	rec := record(0, 1500, 2500, 4026532000, 31337, 0, 40000, 8080, v6, v6, "node", 10, 2, 1, 3)
	buf := make([]byte, 0, 4096)
	f := NewFormatter(events.NewClock())
	allocs := testing.AllocsPerRun(1000, func() {
		Decode(rec, &e)
		buf = f.AppendJSON(buf[:0], &e, events.Name{Name: "web", ID: "0123456789ab"})
	})
	if allocs != 0 {
		t.Errorf("decode + JSON allocates %v times per event, want 0", allocs)
	}
}

func BenchmarkDecodeAndAppendJSON(b *testing.B) {
	var e Event
	rec := record(0, 1500, 2500, 4026532000, 31337, 0, 40000, 8080, v4a, v4b, "node", 2, 2, 1, 3)
	buf := make([]byte, 0, 4096)
	f := NewFormatter(events.NewClock())
	b.ReportAllocs()
	for b.Loop() {
		e.Mono += 1000 // a new time each event, a new second every millionth
		Decode(rec, &e)
		buf = f.AppendJSON(buf[:0], &e, events.Name{Name: "web", ID: "0123456789ab"})
	}
}

// A name that would drive the terminal is shown escaped, the way ls -b and %q show it, and only
// what needs it is changed.
func TestPrintable(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"nginx", "nginx"},
		{"postgres: app", "postgres: app"},
		{"\x1b]0;PWN\x07", `\x1b]0;PWN\a`},
		{"a\nb\tc\rd", `a\nb\tc\rd`},
		{`C:\temp`, `C:\\temp`},
		{"caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"},
		{"evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"\x7f\x9b", `\x7f\x9b`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"\u0085next", `\u0085next`},
		{"", ""},
	} {
		if got := events.Printable(c.in); got != c.want {
			t.Errorf("Printable(%q) = %q, want %q", c.in, got, c.want)
		}
		for i := 0; i < len(events.Printable(c.in)); i++ {
			if b := events.Printable(c.in)[i]; b < 0x20 || b == 0x7f {
				t.Errorf("Printable(%q) holds byte %#x", c.in, b)
			}
		}
	}
}
