package recorder

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/recording"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// written is what the next containers block says, if one is pending: its type and, per container,
// the state the recorder holds as "ID netns started stopped exit selected".
func written(h *history) (recording.BlockType, []string, bool) {
	typ, list, ok := h.pending()
	out := []string{}
	for _, c := range list.List {
		stopped := "-"
		if !c.Stopped.IsZero() {
			stopped = c.Stopped.Sub(t0).String()
		}
		out = append(out, fmt.Sprintf("%s %d %s %s %d %v", c.ID, c.Netns, c.Started.Sub(t0), stopped, c.ExitCode, c.Selected))
	}
	return typ, out, ok
}

// expect checks the pending block; typ 0 says none is.
func expect(t *testing.T, h *history, typ recording.BlockType, want ...string) {
	t.Helper()
	gotType, got, ok := written(h)
	if typ == 0 {
		if ok {
			t.Fatalf("a block of type %d is pending, want none: %q", gotType, got)
		}
		return
	}
	if want == nil {
		want = []string{}
	}
	if !ok || gotType != typ || !reflect.DeepEqual(got, want) {
		t.Fatalf("pending: %v, type %d %q\nwant: type %d %q", ok, gotType, got, typ, want)
	}
}

func ctr(id string, netns uint32) containers.Container {
	return containers.Container{ID: id, Name: "c-" + id, Runtime: "docker", Netns: netns, Up: true}
}

// A web container that crash-loops next to a database: the file starts with the full list, then
// holds only what changed, each stop with the daemon's exit code and time, and the restart as a
// new start in its new namespace.
func TestACrashLoopIsWrittenAsChangesWithItsExitCodes(t *testing.T) {
	h := newHistory([]containers.Selector{{ID: "web"}})
	expect(t, h, recording.BlockContainers) // no runtime listed yet: the first block is the empty full list
	h.update([]containers.Container{ctr("db", 10), ctr("web", 11)}, at(1))
	expect(t, h, recording.BlockContainerChanges, "db 10 1s - 0 false", "web 11 1s - 0 true")
	expect(t, h, 0) // nothing changed since

	h.died(containers.Exit{Container: ctr("web", 11), Listed: true, ExitCode: 137, At: at(2)}, at(3))
	expect(t, h, recording.BlockContainerChanges, "web 11 1s 2s 137 true")
	h.update([]containers.Container{ctr("db", 10)}, at(4)) // the list no longer shows it: already stopped
	expect(t, h, 0)

	h.update([]containers.Container{ctr("db", 10), ctr("web", 12)}, at(5))
	expect(t, h, recording.BlockContainerChanges, "web 12 5s - 0 true")

	// It dies again before the next list, and a sidecar lives and dies between two lists: the
	// runtime's events alone name it; without a time from the daemon, the recorder's own is used.
	h.died(containers.Exit{Container: ctr("web", 12), Listed: true, ExitCode: 1}, at(6))
	h.died(containers.Exit{Container: ctr("init", 0), ExitCode: 0, Started: at(5)}, at(7))
	expect(t, h, recording.BlockContainerChanges, "init 0 5s 7s 0 false", "web 12 5s 6s 1 true")

	// A rotated file starts with everything remembered.
	full, err := h.fullList()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"containers":[`
	if string(full[:len(want)]) != want {
		t.Fatalf("full list starts %.40q", full)
	}
	h.mu.Lock()
	n := len(h.listLocked())
	h.mu.Unlock()
	if n != 3 {
		t.Fatalf("the history holds %d containers, want 3 (db, init, web)", n)
	}
}

// With the first block written, a full list is never written again: only the changes.
func TestTheFirstBlockIsTheFullListEvenAfterChanges(t *testing.T) {
	h := newHistory(nil)
	h.update([]containers.Container{ctr("a", 1)}, at(1))
	h.update([]containers.Container{ctr("b", 2)}, at(2))
	expect(t, h, recording.BlockContainers, "a 1 1s 2s 0 false", "b 2 2s - 0 false")
	h.update(nil, at(3))
	expect(t, h, recording.BlockContainerChanges, "b 2 2s 3s 0 false")
}

// 300 short-lived containers: the recorder remembers the last keepStopped that stopped, and forgets
// one only once the file has its last state.
func TestTheHistoryKeepsTheLast256StoppedContainers(t *testing.T) {
	h := newHistory(nil)
	for i := range 300 {
		h.update([]containers.Container{ctr(fmt.Sprintf("c%03d", i), uint32(100+i))}, at(i))
		written(h)
	}
	// c299 stops; its stop is not written yet, so it is kept beside the 256 written stops that
	// are kept: c043..c298.
	h.update(nil, at(300))
	h.mu.Lock()
	n, oldestKept, newest := len(h.byID), h.byID["c043"] != nil, h.byID["c299"] != nil
	forgotten := h.byID["c042"] == nil
	h.mu.Unlock()
	if n != keepStopped+1 || !oldestKept || !newest || !forgotten {
		t.Fatalf("history holds %d (want %d), c043 kept %v, c299 kept %v, c042 forgotten %v", n, keepStopped+1, oldestKept, newest, forgotten)
	}
	expect(t, h, recording.BlockContainerChanges, "c299 399 4m59s 5m0s 0 false")
}
