package trace

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sockscope/sockscope/events"
)

// --count counts output lines: a record that concludes a connect is two JSON lines (its state,
// then the connect), and when one line is left only its state is printed.
func TestPrinterStopsAtTheLimitOfLines(t *testing.T) {
	ev := func(k Kind) *Event {
		return &Event{Kind: k, Family: afInet, Saddr: netip.MustParseAddr("127.0.0.1"), Daddr: netip.MustParseAddr("127.0.0.1"),
			Sport: 40000, Dport: 8080, OldState: 2, NewState: 1}
	}
	for _, tc := range []struct {
		json         bool
		limit        int
		kinds        []Kind
		lines        int
		done         []bool
		state, conns uint64
	}{
		{true, 3, []Kind{KindState, KindState | KindConnect}, 3, []bool{false, true}, 2, 1},
		{true, 2, []Kind{KindState, KindState | KindConnect}, 2, []bool{false, true}, 2, 0},
		{false, 2, []Kind{KindState | KindConnect, KindConnect}, 1 + 2, []bool{false, true}, 1, 2},
		{true, 0, []Kind{KindState | KindConnect, KindState | KindConnect}, 4, []bool{false, false}, 2, 2},
	} {
		var out, summary bytes.Buffer
		p := NewPrinter(&out, events.NewClock(), tc.json, tc.limit)
		for i, k := range tc.kinds {
			if done := p.Add(ev(k), events.Name{Name: "web"}, true); done != tc.done[i] {
				t.Errorf("%+v: Add #%d reported done=%v", tc, i+1, done)
			}
		}
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(out.String(), "\n"); got != tc.lines {
			t.Errorf("%+v: %d lines, want %d:\n%s", tc, got, tc.lines, out.String())
		}
		p.Summary(&summary, 7)
		want := fmt.Sprintf("sockscope: %d events (%d state, %d connect), 7 lost\n", tc.state+tc.conns, tc.state, tc.conns)
		if summary.String() != want {
			t.Errorf("%+v: summary %q, want %q", tc, summary.String(), want)
		}
	}
}
