package diagnose

import (
	"encoding/json"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/sockets"
	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/recording"
)

// The detectors' thresholds on recordings built in memory; the incidents themselves are
// reproduced in real containers in cmd/sockscope/record_test.go.

const testNetns = 4026532999

var (
	t0   = time.Unix(1_800_000_000, 0).UTC()
	lo   = netip.MustParseAddr("127.0.0.1")
	dest = netip.AddrPortFrom(lo, 8080)
)

func newRecording() *recording.Recording {
	return &recording.Recording{
		Meta: recording.Meta{Start: t0, Interval: time.Second, HostNetns: 1},
		Last: t0.Add(10 * time.Second),
	}
}

// sock encodes one socket record as the kernel's iterator writes it.
func sock(state events.State, sport uint16, remote netip.AddrPort) []byte {
	return sockets.EncodeSocket(&sockets.Socket{State: state, Family: syscall.AF_INET, Saddr: lo, Sport: sport, Daddr: remote.Addr(), Dport: remote.Port()})
}

// addSnapshot adds a snapshot at second sec with n ESTABLISHED connections to dest and tw
// TIME_WAIT sockets to it, on ports from 40000 up, in a range of rangePorts ports.
func addSnapshot(r *recording.Recording, sec, n, tw, rangePorts int) {
	s := recording.SocketSnapshot{Time: t0.Add(time.Duration(sec) * time.Second), Netns: testNetns,
		PortRange: [2]int{40000, 40000 + rangePorts - 1}}
	port := uint16(40000)
	for i := 0; i < n; i++ {
		s.Records = append(s.Records, sock(events.StateEstablished, port, dest)...)
		port++
	}
	for i := 0; i < tw; i++ {
		s.Records = append(s.Records, sock(events.StateTimeWait, port, dest)...)
		port++
	}
	r.Sockets = append(r.Sockets, s)
}

func addEvent(r *recording.Recording, sec int, e trace.Event) {
	e.Mono = uint64(t0.Add(time.Duration(sec) * time.Second).UnixNano()) // clock offset 0
	e.Netns, e.Family = testNetns, syscall.AF_INET
	e.Saddr, e.Daddr, e.Dport = lo, dest.Addr(), dest.Port()
	r.Events = append(r.Events, e)
}

func findings(t *testing.T, r *recording.Recording) []Finding {
	t.Helper()
	f, err := r.Open()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Summarize(f, "test", nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Findings
}

func onlyKind(t *testing.T, fs []Finding, kind string) *Finding {
	t.Helper()
	if len(fs) != 1 || fs[0].Kind != kind {
		t.Fatalf("want one %s finding, got %+v", kind, fs)
	}
	return &fs[0]
}

func TestLeakNeedsGrowthWithoutPlateau(t *testing.T) {
	for _, tc := range []struct {
		name   string
		series []int
		leak   bool
	}{
		{"growing", []int{5, 10, 20, 30, 40}, true},
		{"growing with steps", []int{10, 10, 20, 20, 30, 30, 40, 50}, true},
		{"plateau", []int{5, 10, 40, 40, 40, 40}, false},
		{"falls once", []int{5, 20, 15, 30, 40}, false},
		{"small growth", []int{1, 2, 4, 8, 16}, false}, // 15 more: below leakMinGrowth
		{"too few snapshots", []int{5, 20, 40}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecording()
			for i, n := range tc.series {
				addSnapshot(r, i, n, 0, 28232)
			}
			fs := findings(t, r)
			if !tc.leak {
				if len(fs) != 0 {
					t.Fatalf("no leak expected, got %+v", fs)
				}
				return
			}
			f := onlyKind(t, fs, "connection_leak")
			if f.Numbers["first"] != float64(tc.series[0]) || f.Numbers["last"] != float64(tc.series[len(tc.series)-1]) {
				t.Errorf("numbers %v, want first %d last %d", f.Numbers, tc.series[0], tc.series[len(tc.series)-1])
			}
		})
	}
}

func TestPortUseWarnsBeforeConnectFails(t *testing.T) {
	r := newRecording()
	addSnapshot(r, 1, 5, 80, 100) // 85 of 100 ports to one destination
	f := onlyKind(t, findings(t, r), "port_exhaustion")
	if f.Severity != Warning || f.Numbers["peak_used"] != 85 || f.Numbers["peak_time_wait"] != 80 || f.Numbers["range_ports"] != 100 || f.Numbers["eaddrnotavail"] != 0 {
		t.Errorf("got %v %v", f.Severity, f.Numbers)
	}

	r = newRecording()
	addSnapshot(r, 1, 5, 70, 100) // 75%: not yet
	if fs := findings(t, r); len(fs) != 0 {
		t.Errorf("75%% of the range is not a finding: %+v", fs)
	}

	r = newRecording()
	addEvent(r, 2, trace.Event{Kind: trace.KindConnect, Errno: syscall.EADDRNOTAVAIL})
	f = onlyKind(t, findings(t, r), "port_exhaustion")
	if f.Severity != Critical || f.Numbers["eaddrnotavail"] != 1 {
		t.Errorf("one EADDRNOTAVAIL: got %v %v", f.Severity, f.Numbers)
	}
}

func TestRefusalsAndResetsNeedRepetition(t *testing.T) {
	r := newRecording()
	for i := 0; i < refusedMin-1; i++ {
		addEvent(r, 1, trace.Event{Kind: trace.KindConnect, Errno: syscall.ECONNREFUSED})
	}
	if fs := findings(t, r); len(fs) != 0 {
		t.Errorf("%d refusals are not a finding: %+v", refusedMin-1, fs)
	}
	addEvent(r, 1, trace.Event{Kind: trace.KindConnect, Errno: syscall.ECONNREFUSED})
	if f := onlyKind(t, findings(t, r), "connect_refused"); f.Numbers["refused"] != refusedMin {
		t.Errorf("refused = %v, want %d", f.Numbers["refused"], refusedMin)
	}

	r = newRecording()
	for i := 0; i < 100; i++ {
		addEvent(r, 1, trace.Event{Kind: trace.KindState, OldState: events.StateSynSent, NewState: events.StateEstablished, Sport: uint16(40000 + i)})
		if i < resetMin {
			addEvent(r, 2, trace.Event{Kind: trace.KindState, OldState: events.StateEstablished, NewState: events.StateClose, Sport: uint16(40000 + i)})
		}
	}
	f := onlyKind(t, findings(t, r), "reset_storm")
	if f.Numbers["resets"] != resetMin || f.Numbers["established"] != 100 {
		t.Errorf("got %v", f.Numbers)
	}
}

func TestOnlyAKilledContainerWithConnectionsIsAnUncleanStop(t *testing.T) {
	for _, tc := range []struct {
		exit  int
		open  int
		found bool
	}{{137, 4, true}, {0, 4, false}, {143, 4, false}, {137, 0, false}} {
		r := newRecording()
		stopped := t0.Add(5 * time.Second)
		r.Containers = []recording.Timed[recording.Containers]{{Time: t0, Value: recording.Containers{List: []recording.Container{
			{ID: "0123456789abcdef", Name: "api", Netns: testNetns, Started: t0, Stopped: stopped, ExitCode: tc.exit}}}}}
		addSnapshot(r, 4, tc.open, 0, 28232)
		fs := findings(t, r)
		if !tc.found {
			if len(fs) != 0 {
				t.Errorf("exit %d with %d open: no finding expected, got %+v", tc.exit, tc.open, fs)
			}
			continue
		}
		f := onlyKind(t, fs, "unclean_stop")
		if f.Container != "api" || f.Numbers["open_connections"] != float64(tc.open) || f.Numbers["exit_code"] != 137 {
			t.Errorf("got %s %v", f.Container, f.Numbers)
		}
	}
}

// A verify command pastes as what it says: every name it inserts is one shell word that runs
// nothing, and holds no byte a terminal would act on.
func TestShellQuote(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"web", "web"},
		{"shop/web-0", "shop/web-0"},
		{"", "''"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$(reboot)", "'$(reboot)'"},
		{"x;rm -rf /", "'x;rm -rf /'"},
		{"ns\x1b]0;PWN\x07", `$'ns\x1b]0;PWN\a'`},
		{"a'b\nc", `$'a\'b\nc'`},
		{"back\\slash\t", `$'back\\slash\t'`},
	} {
		if got := shellQuote(c.in); got != c.want {
			t.Errorf("shellQuote(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

// Findings name what the recording names: as text, no raw control byte reaches the terminal,
// and the verify command's name is quoted; as JSON, the names are exact.
func TestFindingsTextShowsNamesEscaped(t *testing.T) {
	f := Finding{Kind: "unclean_stop", Container: "api\x1b[2J", Summary: "api\x1b[2J was killed", Evidence: []string{"\x07"},
		Verify: "docker inspect " + shellQuote("api\x1b[2J"), Fix: "fix"}
	var b strings.Builder
	if err := WriteFindings(&b, []Finding{f}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\x1b\x07") || !strings.Contains(b.String(), `verify: docker inspect $'api\x1b[2J'`) {
		t.Errorf("text:\n%s", b.String())
	}
	b.Reset()
	if err := WriteFindingsJSON(&b, []Finding{f}); err != nil {
		t.Fatal(err)
	}
	var back struct{ Container string }
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil || back.Container != f.Container {
		t.Errorf("JSON: %q, %v", back.Container, err)
	}
}
