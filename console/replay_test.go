package console

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/sockets"
	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/recording"
)

// golden is a recording of every block type written by an older sockscope: three events (a
// refused connect of nginx in shop/web-7d9f, its next connect established, and curl's socket
// closed in an unnamed namespace), one socket snapshot and three syscall counts.
const golden = "../recording/testdata/golden-v2.rec"

func openGolden(t *testing.T) *recording.File {
	t.Helper()
	rec, closer, err := recording.OpenPath(golden, recording.DefaultBudget)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closer.Close() })
	return rec
}

func TestReplayTraceSelectsByNamespaceAndFilter(t *testing.T) {
	rec := openGolden(t)
	web, err := rec.SelectNetns([]string{"shop/web-7d9f"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		netns  map[uint32]bool
		filter trace.Filter
		count  int
		want   []string // the comm and connect outcome of each line, in order
	}{
		{"all", nil, trace.Filter{}, 0, []string{"nginx ECONNREFUSED", "nginx -", "nginx ok", "curl -"}},
		{"the container web", web, trace.Filter{}, 0, []string{"nginx ECONNREFUSED", "nginx -", "nginx ok"}},
		{"a namespace by inode", map[uint32]bool{4026532501: true}, trace.Filter{}, 0, []string{"curl -"}},
		{"connect errors", nil, trace.Filter{ConnectErrorsOnly: true}, 0, []string{"nginx ECONNREFUSED"}},
		{"by comm", nil, trace.Filter{Comms: []string{"curl"}}, 0, []string{"curl -"}},
		{"two lines", nil, trace.Filter{}, 2, []string{"nginx ECONNREFUSED", "nginx -"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errw bytes.Buffer
			o := TraceOptions{Filter: tc.filter, JSON: true, Count: tc.count, Stdout: &out, Stderr: &errw}
			if err := ReplayTrace(rec, golden, tc.netns, o); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				comm, errno := field(l, "comm"), field(l, "errno")
				switch {
				case field(l, "type") == "state":
					errno = "-"
				case errno == "":
					errno = "ok"
				}
				got = append(got, comm+" "+errno)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("lines %q, want %q", got, tc.want)
			}
		})
	}
}

// field is a string field of one JSON line.
func field(line, name string) string {
	_, v, ok := strings.Cut(line, `"`+name+`":"`)
	if !ok {
		return "?"
	}
	v, _, _ = strings.Cut(v, `"`)
	return v
}

func TestReplaySocketsSaysWhenNoSnapshotIsThatEarly(t *testing.T) {
	rec := openGolden(t)
	var out bytes.Buffer
	err := ReplaySockets(rec, golden, nil, SocketsOptions{At: time.Second, Stdout: &out})
	want := golden + ": no snapshot in the first 1s of the recording (the first was taken 6s after the start)"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	out.Reset()
	if err := ReplaySockets(rec, golden, nil, SocketsOptions{At: -1, Print: sockets.Options{State: events.StateTimeWait}, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "TIME_WAIT") {
		t.Errorf("TIME_WAIT sockets:\n%s\nwant the header and one TIME_WAIT socket", out.String())
	}
}

func TestSelectNetnsNamesTheHost(t *testing.T) {
	rec := openGolden(t)
	got, err := rec.SelectNetns(nil, []string{"host", "7"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[rec.Meta.HostNetns] || !got[7] {
		t.Errorf("--netns host,7: %v; want the host's %d and 7", got, rec.Meta.HostNetns)
	}
	_, err = rec.SelectNetns(nil, []string{"/run/netns/blue"})
	var bad *recording.NetnsArgError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), "give the namespace's inode") {
		t.Errorf("--netns /run/netns/blue: %v; want a NetnsArgError (a usage error) asking for the inode", err)
	}
}
