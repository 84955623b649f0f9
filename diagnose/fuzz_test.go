package diagnose

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/internal/craft"
	"github.com/sockscope/sockscope/recording"
)

// fuzzRecording is a small honest recording with something for every detector to read: a
// container killed with connections open, connects that fail, snapshots, syscalls, facts.
func fuzzRecording(t testing.TB) []byte {
	r := newRecording()
	r.End = &recording.End{Reason: "duration"}
	stopped := t0.Add(5 * time.Second)
	r.Containers = []recording.Timed[recording.Containers]{
		{Time: t0, Value: recording.Containers{List: []recording.Container{{ID: "0123456789abcdef", Name: "api", Netns: testNetns, Started: t0}}}},
		{Time: stopped, Value: recording.Containers{Changes: true, List: []recording.Container{{ID: "0123456789abcdef", Name: "api", Netns: testNetns, Started: t0, Stopped: stopped, ExitCode: 137}}}},
	}
	for i := range 4 {
		addSnapshot(r, i+1, 5*(i+1), 3, 100)
	}
	addEvent(r, 2, trace.Event{Kind: trace.KindConnect, Errno: syscall.EADDRNOTAVAIL})
	addEvent(r, 3, trace.Event{Kind: trace.KindConnect, Errno: syscall.ECONNREFUSED})
	addEvent(r, 5, trace.Event{Kind: trace.KindState, OldState: events.StateEstablished, NewState: events.StateClose, Saddr: netip.MustParseAddr("127.0.0.1"), Sport: 40000})
	key := recording.SyscallKey{Netns: testNetns, Tgid: 7, Nr: 257, Comm: "api"}
	r.Syscalls = []recording.Timed[recording.SyscallCounts]{{Time: t0.Add(6 * time.Second), Value: recording.SyscallCounts{
		Counts: []recording.SyscallCount{{SyscallKey: key, Count: 9, Errors: 2}},
		Errors: []recording.SyscallErrors{{SyscallKey: key, Errno: syscall.EMFILE, Count: 2}},
	}}}
	r.Facts = []recording.Timed[recording.Facts]{{Time: t0.Add(6 * time.Second), Value: recording.Facts{
		Netns:     []recording.NetnsFacts{{Netns: testNetns, PortRange: [2]int{40000, 40099}}},
		Processes: []recording.Process{{Pid: 7, Netns: testNetns, Comm: "api", NofileSoft: 1024, NofileHard: 1024, Fds: 1024}},
	}}}
	data, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzReport fuzzes what `sockscope report` and `sockscope diagnose -r` do with a file: open it,
// summarise it (every detector), and write the report as text, JSON and HTML and the findings
// as text and JSON. Nothing may panic; a file that is refused is refused with a *FormatError (or
// as more namespaces than a report holds); every report's timeline stays within its bounds.
func FuzzReport(f *testing.F) {
	f.Add(fuzzRecording(f))
	for _, c := range craft.Files() {
		if len(c.Data) < 64<<10 {
			f.Add(c.Data)
		}
	}
	// The bomb, small: mutating and minimising the 196 KB one would take most of the time.
	f.Add(craft.Bomb(2))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := recording.Open(bytes.NewReader(data), int64(len(data)), recording.DefaultBudget)
		if err != nil {
			var fe *recording.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("Open: %v (%T) is not a *FormatError", err, err)
			}
			return
		}
		for _, only := range []map[uint32]bool{nil, {testNetns: true}} {
			r, err := Summarize(rec, "fuzz", only, 3)
			if err != nil {
				var fe *recording.FormatError
				if !errors.As(err, &fe) && !errors.Is(err, errTooManyNamespaces) {
					t.Fatalf("Summarize: %v (%T)", err, err)
				}
				return
			}
			for _, tg := range r.Targets {
				if len(tg.Timeline) > rec.Blocks+1 || len(tg.Timeline) != len(r.Targets[0].Timeline) {
					t.Fatalf("%s: %d timeline steps from %d blocks (the first target has %d)", tg.Name, len(tg.Timeline), rec.Blocks, len(r.Targets[0].Timeline))
				}
			}
			for _, write := range []func(io.Writer) error{
				func(w io.Writer) error { return WriteText(w, r) },
				func(w io.Writer) error { return WriteHTML(w, r) },
				func(w io.Writer) error { return WriteFindings(w, r.Findings) },
				func(w io.Writer) error { return WriteFindingsJSON(w, r.Findings) },
				func(w io.Writer) error { return json.NewEncoder(w).Encode(r) },
			} {
				if err := write(io.Discard); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
		}
	})
}

// The seeds reach what they are for: the honest recording gives findings, the hostile ones are
// refused, the clock step reads.
func TestFuzzReportSeeds(t *testing.T) {
	data := fuzzRecording(t)
	rec, err := recording.Open(bytes.NewReader(data), int64(len(data)), recording.DefaultBudget)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Summarize(rec, "seed", nil, 3)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, f := range r.Findings {
		kinds[f.Kind] = true
	}
	for _, k := range []string{"port_exhaustion", "fd_limit", "unclean_stop"} {
		if !kinds[k] {
			t.Errorf("the seed gives no %s finding: %+v", k, r.Findings)
		}
	}
	for _, c := range craft.Files() {
		rec, err := recording.Open(bytes.NewReader(c.Data), int64(len(c.Data)), recording.DefaultBudget)
		if err == nil {
			_, err = Summarize(rec, c.Name, nil, 3)
		}
		if c.Hostile != (err != nil) || c.Hostile && !errors.Is(err, c.Err) {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}
