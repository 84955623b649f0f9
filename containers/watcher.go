package containers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 30 * time.Second
	// A stream that stayed up this long counts as healthy: the next failure retries quickly again.
	healthyStream = time.Minute
	// At most this many netns of stopped containers keep their names; the oldest go first.
	maxFormer = 4096
)

// Watcher keeps a Names table current and tells its owner which netns inodes belong to the
// selected containers. Create it with NewWatcher, call Sync once, then Run in a goroutine.
type Watcher struct {
	// OnError, when set before Run, receives each failure of the event stream or of a
	// re-inspection; Run keeps going (reconnecting with backoff) after each.
	OnError func(error)
	// OnUpdate, when set before Sync, receives the running containers (with their Pid and Netns)
	// after every sync and every event that was applied, from the goroutine of Sync or Run,
	// after the Names table is current. It must not call Sync.
	OnUpdate func(running []Container)
	// OnDie, when set before Run, receives each container's exit: its ID, exit code and when
	// the daemon saw it, before the OnUpdate that leaves it out. It must not call Sync.
	OnDie func(id string, exitCode int, at time.Time)

	c        *Client
	host     uint32
	selected map[string]bool // full IDs; empty = all containers
	onChange func(netns []uint32)
	names    *Names

	mu       sync.Mutex // serialises state changes and onChange calls
	running  map[string]Container
	former   map[uint32]formerName
	seq      uint64
	last     []uint32
	reported bool
}

type formerName struct {
	nsName
	seq uint64 // age, for eviction
}

// NewWatcher returns a watcher for the daemon behind c. host is the host's netns inode (see
// HostNetns), named "host" by Names. selected holds the full IDs of the containers to follow; empty
// means all containers, which is meant for naming only. onChange (may be nil) is called from the
// goroutine that calls Sync or Run, with the complete, sorted set of netns inodes of the selected
// running containers, whenever that set changes. In follow-all mode containers that share the host's
// netns (--network host) are left out of that set; an explicitly selected one is reported with the
// host's inode. onChange must not call Sync.
//
// The kernel gives a new netns the lowest free inode number, so a restarted container often gets
// the number its old netns had. A restart seen as events still makes two calls (the set without it
// on die, then with it on start), which tells the owner to re-attach per-netns state; a restart
// that happened while the event stream was down and is only found by the re-sync does not, when
// the number is the same.
func NewWatcher(c *Client, host uint32, selected []string, onChange func(netns []uint32)) *Watcher {
	sel := make(map[string]bool, len(selected))
	for _, id := range selected {
		sel[id] = true
	}
	return &Watcher{
		c:        c,
		host:     host,
		selected: sel,
		onChange: onChange,
		names:    newNames(host),
		running:  map[string]Container{},
		former:   map[uint32]formerName{},
	}
}

// Names returns the live table; it stays valid and current for the watcher's whole life.
func (w *Watcher) Names() *Names { return w.names }

// Sync lists the running containers, rebuilds the table and calls onChange with the current set
// (even when unchanged). It returns an error if Docker fails, leaving the table as it was.
func (w *Watcher) Sync(ctx context.Context) error { return w.sync(ctx, true) }

func (w *Watcher) sync(ctx context.Context, force bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	cs, err := w.c.Running(ctx)
	if err != nil {
		return err
	}
	w.running = make(map[string]Container, len(cs))
	for _, c := range cs {
		if c.Netns != 0 {
			w.running[c.ID] = c
		}
	}
	w.publishLocked(force)
	return nil
}

// Run follows the daemon's container events (start, restart, rename, die, stop, destroy) until ctx
// is done, re-inspecting containers as needed. When the stream breaks it reports the failure through
// OnError, waits (backing off from 250 ms to 30 s), reconnects and re-syncs, so nothing that happened
// meanwhile is missed.
func (w *Watcher) Run(ctx context.Context) {
	backoff := minBackoff
	for {
		start := time.Now()
		err := w.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > healthyStream {
			backoff = minBackoff
		}
		w.report(fmt.Errorf("following Docker events at %s: %w (retrying in %v)", w.c.Host(), err, backoff))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (w *Watcher) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the client's reader goroutine

	f := client.Filters{}.
		Add("type", string(events.ContainerEventType)).
		Add("event",
			string(events.ActionStart), string(events.ActionRestart), string(events.ActionRename),
			string(events.ActionDie), string(events.ActionStop), string(events.ActionDestroy))
	ev := w.c.api.Events(ctx, client.EventsListOptions{Filters: f})
	// Subscribed (or failed, which the first receive shows): sync now so that nothing between the
	// last sync and the subscription is missed. Events that arrive meanwhile are applied after it.
	select {
	case err := <-ev.Err:
		return streamErr(err)
	default:
	}
	if err := w.sync(ctx, false); err != nil {
		return err
	}
	for {
		select {
		case m := <-ev.Messages:
			w.handle(ctx, m)
		case err := <-ev.Err:
			return streamErr(err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func streamErr(err error) error {
	if err == nil {
		return errors.New("event stream closed")
	}
	return err
}

func (w *Watcher) handle(ctx context.Context, m events.Message) {
	if m.Type != events.ContainerEventType || m.Actor.ID == "" {
		return
	}
	id := m.Actor.ID
	w.mu.Lock()
	defer w.mu.Unlock()
	switch m.Action {
	case events.ActionStart, events.ActionRestart, events.ActionRename:
		c, err := w.c.Inspect(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			delete(w.running, id)
		case err != nil:
			if ctx.Err() == nil {
				w.report(fmt.Errorf("after %s of container %s: %w", m.Action, shortID(id), err))
			}
			return
		case c.Netns == 0:
			delete(w.running, id) // already gone again
		default:
			w.running[id] = c
		}
	case events.ActionDie, events.ActionStop, events.ActionDestroy:
		if m.Action == events.ActionDie && w.OnDie != nil {
			code, _ := strconv.Atoi(m.Actor.Attributes["exitCode"])
			w.OnDie(id, code, time.Unix(0, m.TimeNano))
		}
		delete(w.running, id)
	default:
		return
	}
	w.publishLocked(false)
}

func (w *Watcher) report(err error) {
	if w.OnError != nil {
		w.OnError(err)
	}
}

// publishLocked builds a new immutable table from the running containers plus the names of
// namespaces whose containers stopped, and reports the selected set if it changed (or if force).
func (w *Watcher) publishLocked(force bool) {
	live := w.liveLocked()
	groups := map[uint32][]Container{}
	for _, c := range live {
		if c.Netns != 0 && c.Netns != w.host {
			groups[c.Netns] = append(groups[c.Netns], c)
		}
	}
	m := make(map[uint32]nsName, len(groups)+len(w.former))
	for ns, cs := range groups {
		m[ns] = nameOf(cs)
		delete(w.former, ns) // claimed again (the kernel reuses inode numbers)
	}
	// A namespace whose last container stopped keeps its last name, so that late events from it
	// are still named, until a running container claims the inode.
	if old := w.names.t.Load(); old != nil {
		for ns, e := range old.m {
			if _, live := m[ns]; live {
				continue
			}
			if _, kept := w.former[ns]; !kept {
				w.seq++
				w.former[ns] = formerName{nsName: e, seq: w.seq}
			}
		}
	}
	if over := len(w.former) - maxFormer; over > 0 {
		type aged struct {
			ns  uint32
			seq uint64
		}
		all := make([]aged, 0, len(w.former))
		for ns, f := range w.former {
			all = append(all, aged{ns, f.seq})
		}
		slices.SortFunc(all, func(a, b aged) int { return cmp.Compare(a.seq, b.seq) })
		for _, a := range all[:over] {
			delete(w.former, a.ns)
		}
	}
	for ns, f := range w.former {
		m[ns] = f.nsName
	}
	w.names.t.Store(&nameTable{host: w.host, m: m})
	if w.OnUpdate != nil {
		w.OnUpdate(live)
	}

	set := w.selectedLocked(live)
	if force || !w.reported || !slices.Equal(set, w.last) {
		w.last, w.reported = set, true
		if w.onChange != nil {
			w.onChange(slices.Clone(set))
		}
	}
}

// liveLocked returns the running containers sorted by ID, leaving out any whose process has left
// its namespace. The kernel gives a freed namespace inode to the next namespace, and Docker may
// report a new container's start before the old one's die: until then the old container would
// claim the new one's inode (joined names, a trace filter on the wrong namespace).
func (w *Watcher) liveLocked() []Container {
	live := make([]Container, 0, len(w.running))
	for _, c := range w.running {
		if c.Netns != 0 {
			if ino, err := NetnsInode(c.Pid); err != nil || ino != c.Netns {
				continue
			}
		}
		live = append(live, c)
	}
	slices.SortFunc(live, func(a, b Container) int { return strings.Compare(a.ID, b.ID) })
	return live
}

func (w *Watcher) selectedLocked(live []Container) []uint32 {
	set := []uint32{}
	for _, c := range live {
		if c.Netns == 0 {
			continue
		}
		if len(w.selected) == 0 {
			if c.Netns == w.host {
				continue
			}
		} else if !w.selected[c.ID] {
			continue
		}
		set = append(set, c.Netns)
	}
	slices.Sort(set)
	return slices.Compact(set)
}
