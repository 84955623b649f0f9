package diagnose

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/recording"
)

func summarize(t *testing.T, r *recording.Recording) *Report {
	t.Helper()
	f, err := r.Open()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Summarize(f, "test", nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func shrink(t *testing.T, v *int, to int) {
	old := *v
	*v = to
	t.Cleanup(func() { *v = old })
}

// Past the bound on cells (namespaces times steps) the steps widen, and nothing is lost: every
// connect is still in one step, every namespace has the same steps, and the report says why.
func TestTimelineWidensWhenCrowded(t *testing.T) {
	shrink(t, &maxCells, 64)
	r := newRecording()
	r.Last = t0.Add(39 * time.Second) // 40 one-second steps
	const nss, per = 8, 40
	for ns := range nss {
		for sec := range per {
			e := trace.Event{Kind: trace.KindConnect, Mono: uint64(t0.Add(time.Duration(sec) * time.Second).UnixNano()),
				Netns: uint32(5000 + ns), Family: syscall.AF_INET, Daddr: lo, Dport: 80}
			r.Events = append(r.Events, e)
		}
	}
	rep := summarize(t, r)
	if len(rep.Targets) != nss {
		t.Fatalf("%d targets, want %d", len(rep.Targets), nss)
	}
	steps := len(rep.Targets[0].Timeline)
	if cells := steps * nss; cells > maxCells {
		t.Errorf("%d steps of %d namespaces: %d cells, more than %d", steps, nss, cells, maxCells)
	}
	if rep.Interval != 8*time.Second || steps != 5 {
		t.Errorf("steps of %s, %d of them; want 8s (1s doubled until 8 namespaces fit 32 cells), 5", rep.Interval, steps)
	}
	for _, tg := range rep.Targets {
		n := 0
		for _, s := range tg.Timeline {
			n += s.Connects
		}
		if n != per || len(tg.Timeline) != steps {
			t.Errorf("%s: %d connects in %d steps, want %d in %d", tg.Name, n, len(tg.Timeline), per, steps)
		}
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "the timeline's steps are 8s, not the recording's 1s: 8 namespaces") {
		t.Errorf("notes %q", rep.Notes)
	}
}

// Past the bound on remote endpoints the rarest are dropped: a server's peers, one connection
// each, go; the destination refusing connects stays, with its exact count.
func TestRareEndpointsAreDroppedNotTheOnesThatMatter(t *testing.T) {
	shrink(t, &maxEndpoints, 32)
	r := newRecording()
	for i := range 200 {
		peer := netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)), uint16(40000+i))
		e := trace.Event{Kind: trace.KindState, OldState: events.StateSynRecv, NewState: events.StateEstablished, Sport: 80}
		addEvent(r, 1, e)
		r.Events[len(r.Events)-1].Daddr, r.Events[len(r.Events)-1].Dport = peer.Addr(), peer.Port()
		if i%20 == 0 {
			addEvent(r, 2, trace.Event{Kind: trace.KindConnect, Errno: syscall.ECONNREFUSED})
		}
	}
	rep := summarize(t, r)
	if f := onlyKind(t, rep.Findings, "connect_refused"); f.Numbers["refused"] != 10 {
		t.Errorf("refused = %v, want 10", f.Numbers["refused"])
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "remote endpoints seen fewer than") {
		t.Errorf("notes %q", rep.Notes)
	}
}

// More namespaces than a report holds: one line that says how to report them anyway.
func TestTooManyNamespaces(t *testing.T) {
	shrink(t, &maxNamespaces, 4)
	r := newRecording()
	for ns := range 5 {
		addEvent(r, 1, trace.Event{Kind: trace.KindConnect})
		r.Events[len(r.Events)-1].Netns = uint32(6000 + ns)
	}
	f, err := r.Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Summarize(f, "test", nil, 10); err != errTooManyNamespaces {
		t.Fatalf("got %v, want errTooManyNamespaces", err)
	}
	if _, err := Summarize(f, "test", map[uint32]bool{6000: true, 6001: true}, 10); err != nil {
		t.Errorf("two of them: %v", err)
	}
}

// A recording whose blocks are fewer than its intervals (stopped, or the clock jumped an hour)
// gets no more steps than blocks, whole intervals each.
func TestStepsAreBoundedByTheBlocks(t *testing.T) {
	var buf bytes.Buffer
	w, err := recording.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := json.Marshal(recording.Meta{Start: t0, Interval: 100 * time.Millisecond, HostNetns: 1})
	w.WriteBlock(recording.BlockMeta, t0.UnixNano(), meta)
	snap := recording.SocketSnapshot{Netns: testNetns, PortRange: [2]int{40000, 40099}, Records: sock(events.StateEstablished, 40000, dest)}
	w.WriteBlock(recording.BlockSockets, t0.Add(time.Second).UnixNano(), recording.EncodeSockets(&snap))
	w.WriteBlock(recording.BlockLost, t0.Add(time.Hour).UnixNano(), []byte(`{}`))
	f, err := recording.Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()), recording.DefaultBudget)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Summarize(f, "test", nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	tl := rep.Targets[0].Timeline
	if len(tl) != 4 || rep.Interval != 1200*time.Second || !tl[0].HasSnapshot || tl[0].States["ESTABLISHED"] != 1 {
		t.Errorf("%d steps of %s from 3 blocks over an hour (want 4 of 20m: blocks+1): %+v", len(tl), rep.Interval, tl)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "its 3 blocks span 1h0m0s") {
		t.Errorf("notes %q", rep.Notes)
	}
}
