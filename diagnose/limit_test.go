package diagnose

import (
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

// addConn adds one connection to dest from local port sport: established at second sec and
// ended after lived, by its new state (FIN_WAIT1: the client closed first; CLOSE_WAIT: the
// server; CLOSE: a reset). lived 0 leaves it open.
func addConn(r *recording.Recording, sec int, sport uint16, lived time.Duration, end events.State) {
	addEvent(r, sec, trace.Event{Kind: trace.KindConnect | trace.KindState, OldState: events.StateSynSent, NewState: events.StateEstablished, Sport: sport, PrevState: time.Millisecond})
	if lived == 0 {
		return
	}
	e := trace.Event{Kind: trace.KindState, OldState: events.StateEstablished, NewState: end, Sport: sport, PrevState: lived}
	addEvent(r, sec, e)
	r.Events[len(r.Events)-1].Mono += uint64(lived)
}

// leakRecording is a leak to dest in snapshots one second apart (series), with turned connects
// accepted and closed 3 ms later, the first byServer of them by the server.
func leakRecording(series []int, turned, byServer int) *recording.Recording {
	r := newRecording()
	for i, n := range series {
		addSnapshot(r, i, n, 0, 28232)
	}
	for i := range turned {
		end := events.StateFinWait1
		if i < byServer {
			end = events.StateCloseWait
		}
		addConn(r, len(series)-1, uint16(50000+i), 3*time.Millisecond, end)
	}
	return r
}

func TestLeakAtLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		series  []int
		turned  int
		kind    string // "": no finding
		from    int
		ceiling int
	}{
		{"rose and held", []int{0, 5, 12, 17, 17, 17, 17}, 5, "leak_at_limit", 0, 17},
		{"rose steeply, snapshots far apart", []int{0, 17, 17}, 5, "leak_at_limit", 0, 17},
		{"a snapshot caught a refused connection", []int{0, 9, 17, 18, 17, 17}, 5, "leak_at_limit", 0, 17},
		{"from a base", []int{10, 10, 25, 40, 40, 40}, 4, "leak_at_limit", 10, 40},
		{"flat from the start", []int{17, 17, 17, 17, 17}, 5, "", 0, 0},
		{"flat from the first connections", []int{0, 17, 17, 17}, 0, "", 0, 0},
		{"still growing: the other rule", []int{5, 10, 20, 30, 40}, 5, "connection_leak", 0, 0},
		{"small numbers", []int{0, 2, 4, 4, 4}, 5, "", 0, 0},
		{"too few turned away", []int{0, 5, 17, 17, 17}, limitMinTurnedAway - 1, "", 0, 0},
		{"not held: fell after the peak", []int{0, 10, 20, 12, 20, 20}, 5, "", 0, 0},
		{"no plateau yet", []int{0, 5, 10, 20}, 5, "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := findings(t, leakRecording(tc.series, tc.turned, 2))
			if tc.kind == "" {
				if len(fs) != 0 {
					t.Fatalf("no finding expected, got %+v", fs)
				}
				return
			}
			f := onlyKind(t, fs, tc.kind)
			if tc.kind != "leak_at_limit" {
				return
			}
			want := map[string]float64{"from": float64(tc.from), "ceiling": float64(tc.ceiling), "turned_away": float64(tc.turned),
				"closed_at_once": float64(tc.turned), "closed_by_server": 2, "failed": 0}
			for k, v := range want {
				if f.Numbers[k] != v {
					t.Errorf("%s = %v, want %v (all %v)", k, f.Numbers[k], v, f.Numbers)
				}
			}
			if f.Severity != Critical || f.Verify == "" || f.Fix == "" {
				t.Errorf("got %+v", f)
			}
		})
	}
}

// Failed connects are turned away too; connections that lived long, or whose age is unknown
// (first seen mid-life), are not.
func TestLeakAtLimitCountsFailuresNotLongConnections(t *testing.T) {
	r := leakRecording([]int{0, 8, 16, 16, 16}, 0, 0)
	for range 3 {
		addEvent(r, 4, trace.Event{Kind: trace.KindConnect, Errno: syscall.ETIMEDOUT})
	}
	addConn(r, 4, 51000, 2*time.Second, events.StateFinWait1)
	addEvent(r, 4, trace.Event{Kind: trace.KindState, OldState: events.StateEstablished, NewState: events.StateCloseWait, Sport: 51001})
	f := onlyKind(t, findings(t, r), "leak_at_limit")
	if f.Numbers["turned_away"] != 3 || f.Numbers["failed"] != 3 || f.Numbers["closed_at_once"] != 0 {
		t.Errorf("got %v", f.Numbers)
	}
}

// The processes on both sides: the client's, and the server's when its namespace is recorded.
func TestLeakAtLimitNamesOwners(t *testing.T) {
	r := newRecording()
	for i, n := range []int{0, 9, 17, 17} {
		s := recording.SocketSnapshot{Time: t0.Add(time.Duration(i) * time.Second), Netns: testNetns, PortRange: [2]int{32768, 60999}}
		for j := range n {
			client := sockets.Socket{State: events.StateEstablished, Family: syscall.AF_INET, Saddr: lo, Sport: uint16(40000 + j), Daddr: dest.Addr(), Dport: dest.Port(), Inode: uint32(1000 + j)}
			server := sockets.Socket{State: events.StateEstablished, Family: syscall.AF_INET, Saddr: dest.Addr(), Sport: dest.Port(), Daddr: lo, Dport: uint16(40000 + j), Inode: uint32(2000 + j)}
			s.Records = append(s.Records, sockets.EncodeSocket(&client)...)
			s.Records = append(s.Records, sockets.EncodeSocket(&server)...)
			s.Owners = append(s.Owners, sockets.EncodeOwner(client.Inode, sockets.Owner{Pid: 7, Comm: "app"})...)
			s.Owners = append(s.Owners, sockets.EncodeOwner(server.Inode, sockets.Owner{Pid: uint32(100 + j), Comm: "postgres"})...)
		}
		r.Sockets = append(r.Sockets, s)
	}
	for i := range 4 {
		addConn(r, 3, uint16(50000+i), 2*time.Millisecond, events.StateCloseWait)
	}
	f := onlyKind(t, findings(t, r), "leak_at_limit")
	ev := strings.Join(f.Evidence, "\n")
	for _, want := range []string{"client side: app (pid 7, 17 sockets)", "server side: postgres (17 processes from pid 100, 17 sockets)"} {
		if !strings.Contains(ev, want) {
			t.Errorf("evidence lacks %q:\n%s", want, ev)
		}
	}
	if f.Numbers["ceiling"] != 17 || f.Numbers["turned_away"] != 4 || f.Numbers["closed_by_server"] != 4 {
		t.Errorf("got %v", f.Numbers)
	}
}

func TestServerRefusals(t *testing.T) {
	for _, tc := range []struct {
		name           string
		byServer, kept int // closed by the server at once; kept open
		slow           int // closed by the server after 2 s
		found          bool
	}{
		{"every connection", 30, 0, 0, true},
		{"most", 12, 10, 0, true},
		{"half is not most", 10, 10, 0, false},
		{"too few", refusedMin - 1, 0, 0, false},
		{"closed late", 0, 0, 30, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecording()
			port := uint16(40000)
			for range tc.byServer {
				addConn(r, 1, port, 4*time.Millisecond, events.StateCloseWait)
				port++
			}
			for range tc.kept {
				addConn(r, 1, port, 0, 0)
				port++
			}
			for range tc.slow {
				addConn(r, 1, port, 2*time.Second, events.StateCloseWait)
				port++
			}
			fs := findings(t, r)
			if !tc.found {
				if len(fs) != 0 {
					t.Fatalf("no finding expected, got %+v", fs)
				}
				return
			}
			f := onlyKind(t, fs, "server_refusal")
			if f.Numbers["closed_by_server"] != float64(tc.byServer) || f.Numbers["established"] != float64(tc.byServer+tc.kept) {
				t.Errorf("got %v", f.Numbers)
			}
		})
	}
}

// Owners are kept for a bounded number of endpoints, whatever a file holds: the first seen
// keep theirs, later ones are named by no one.
func TestOwnersAreBounded(t *testing.T) {
	shrink(t, &maxOwned, 3)
	r := newRecording()
	for i := range 10 {
		d := netip.AddrPortFrom(lo, uint16(9000+i))
		c := sockets.Socket{State: events.StateEstablished, Family: syscall.AF_INET, Saddr: lo, Sport: uint16(40000 + i), Daddr: d.Addr(), Dport: d.Port(), Inode: uint32(1 + i)}
		s := recording.SocketSnapshot{Time: t0.Add(time.Duration(i) * time.Second), Netns: testNetns, PortRange: [2]int{32768, 60999},
			Records: sockets.EncodeSocket(&c), Owners: sockets.EncodeOwner(c.Inode, sockets.Owner{Pid: 7, Comm: "app"})}
		r.Sockets = append(r.Sockets, s)
	}
	f, err := r.Open()
	if err != nil {
		t.Fatal(err)
	}
	v := newView(f, nil)
	if err := f.Scan(recording.Visitor{Sockets: v.addSnapshot}); err != nil {
		t.Fatal(err)
	}
	s := v.ns[testNetns]
	if v.owned != 3 || len(s.clients)+len(v.servers) != 3 {
		t.Errorf("owned %d: %d clients' and %d servers' endpoints kept, want 3 in all", v.owned, len(s.clients), len(v.servers))
	}
}
