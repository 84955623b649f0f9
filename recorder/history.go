package recorder

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/recording"
)

// keepStopped is how many stopped containers the recorder remembers: for the exit code that comes
// after the stop, and for the full list that starts a rotated file (their namespaces' late events
// keep their names). The file keeps every container it saw.
const keepStopped = 256

// history is the containers the recorder knows, running or stopped, and which of them changed
// since the file last heard of them. The watcher's goroutines update it; the recorder writes it.
type history struct {
	selected []containers.Selector // --container: marks the containers selected

	mu      sync.Mutex
	byID    map[string]*recording.Container // by full ID: the running containers and the last stopped
	changed map[string]bool                 // IDs whose state the file does not have yet
	based   bool                            // the file has a full list
	running []containers.Container
}

func newHistory(selected []containers.Selector) *history {
	return &history{selected: selected, byID: map[string]*recording.Container{}, changed: map[string]bool{}}
}

func (h *history) isSelected(c containers.Container) bool {
	return slices.ContainsFunc(h.selected, func(s containers.Selector) bool { return s.Matches(c) })
}

// update follows the running containers: new ones are added, gone ones stopped at now. A
// container whose namespace changed restarted: it starts anew.
func (h *history) update(running []containers.Container, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range running {
		seen[c.ID] = true
		old, ok := h.byID[c.ID]
		if ok && old.Stopped.IsZero() && old.Netns == c.Netns {
			continue
		}
		rc := recording.FromContainer(c)
		rc.Started = now.UTC()
		rc.Selected = h.isSelected(c)
		h.byID[c.ID] = &rc
		h.changed[c.ID] = true
	}
	for id, c := range h.byID {
		if !seen[id] && c.Stopped.IsZero() {
			c.Stopped = now.UTC()
			h.changed[id] = true
		}
	}
	h.running = running
	h.forgetLocked()
}

// died records a container's exit code and the daemon's time of it (now when the daemon gave
// none). A container the history does not hold yet joins it from what the watcher knew and the
// runtime's events said: its name, image, start and exit. That is a container that stopped before
// any list showed it running (a crash loop on a busy host), and also one that the watcher listed
// but that stopped before the recorder's next snapshot took the watcher's list (a container that
// lives less than the interval: 44 of 50 short-lived containers were recorded before).
func (h *history) died(e containers.Exit, now time.Time) {
	at := cmp.Or(e.At, now).UTC()
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.byID[e.ID]; ok {
		c.ExitCode = e.ExitCode
		c.Stopped = at
		h.changed[e.ID] = true
	} else {
		rc := recording.FromContainer(e.Container)
		rc.Started = cmp.Or(e.Started, e.At, now).UTC()
		rc.Stopped, rc.ExitCode = at, e.ExitCode
		rc.Selected = h.isSelected(e.Container)
		h.byID[e.ID] = &rc
		h.changed[e.ID] = true
	}
}

// forgetLocked bounds the history: beyond keepStopped stopped containers, the one that stopped
// first goes, once the file has its last state.
func (h *history) forgetLocked() {
	var stopped []*recording.Container
	for _, c := range h.byID {
		if !c.Stopped.IsZero() && !h.changed[c.ID] {
			stopped = append(stopped, c)
		}
	}
	if over := len(stopped) - keepStopped; over > 0 {
		slices.SortFunc(stopped, func(a, b *recording.Container) int { return a.Stopped.Compare(b.Stopped) })
		for _, c := range stopped[:over] {
			delete(h.byID, c.ID)
		}
	}
}

// pending is the containers block to write next, and whether there is one: the first block of
// the file lists every container (none, without runtimes), the others only the changes, so that a
// recording of heavy churn grows with the churn and not with the churn squared. What it returns
// counts as written.
func (h *history) pending() (recording.BlockType, recording.Containers, bool) {
	h.mu.Lock()
	t := recording.BlockContainerChanges
	list := recording.Containers{List: []recording.Container{}}
	for id := range h.changed {
		if c, ok := h.byID[id]; ok {
			list.List = append(list.List, *c)
		}
	}
	if !h.based {
		t, list.List, h.based = recording.BlockContainers, h.listLocked(), true
	}
	clear(h.changed)
	h.mu.Unlock()
	if t == recording.BlockContainerChanges && len(list.List) == 0 {
		return t, list, false
	}
	slices.SortFunc(list.List, func(a, b recording.Container) int { return strings.Compare(a.ID, b.ID) })
	return t, list, true
}

func (h *history) listLocked() []recording.Container {
	list := make([]recording.Container, 0, len(h.byID))
	for _, c := range h.byID {
		list = append(list, *c)
	}
	slices.SortFunc(list, func(a, b recording.Container) int { return strings.Compare(a.ID, b.ID) })
	return list
}

// fullList is the containers block a rotated file starts with: what the recorder remembers.
func (h *history) fullList() ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return json.Marshal(recording.Containers{List: h.listLocked()})
}

// targets are the namespaces to snapshot: the selected containers and pods (and --netns), or the
// host and every running container.
func (h *history) targets(sc *containers.Scope) []containers.Target {
	h.mu.Lock()
	defer h.mu.Unlock()
	return sc.Targets(h.running, false)
}
