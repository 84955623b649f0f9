package containers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 30 * time.Second
	// A stream that stayed up this long counts as healthy: the next failure retries quickly again.
	healthyStream = time.Minute
	// At most this many netns of stopped containers keep their names; the oldest go first.
	maxFormer = 4096
	// An unnamed namespace asks the runtimes again at most this often (see Resolve).
	resolveEvery = 2 * time.Second
	// Resolve asks the runtimes at most this many times a second over all namespaces.
	resolveBurst = 5
)

// Watcher keeps a Names table current from any number of runtimes and tells its owner which netns
// inodes belong to the selected containers. Create it with NewWatcher, call Sync once, then Run in
// a goroutine.
type Watcher struct {
	// OnError, when set before Run, receives each failure of a runtime's event stream or of a
	// lookup; Run keeps going (reconnecting with backoff) after each.
	OnError func(rt Info, err error)
	// OnRuntime, when set before Sync, receives each runtime's state: up after every answer,
	// down after every failure.
	OnRuntime func(rt Info, up bool)
	// OnUpdate, when set before Sync, receives the running containers and pod sandboxes (with
	// their Pid and Netns) after every sync and every change that was applied, from the goroutine
	// of Sync, Run or Resolve, after the Names table is current. It must not call Sync.
	OnUpdate func(running []Container)
	// OnDie, when set before Run, receives each container's exit once, before the OnUpdate that
	// leaves it out; also the exit of a container that stopped before any list showed it running
	// (Listed false; its start time from the runtime's start event). It must not call Sync.
	OnDie func(Exit)

	rts      []Runtime
	host     uint32
	selected []Selector // empty = all containers
	onChange func(netns []uint32)
	names    *Names

	mu       sync.Mutex             // serialises state changes and onChange calls
	running  []map[string]Container // per runtime, by ID
	synced   []bool                 // per runtime: its running set is known
	listing  []sync.Mutex           // per runtime: one list at a time, applied in order
	former   map[uint32]formerName
	seq      uint64
	last     []uint32
	reported bool

	starts map[string]time.Time // start events' times, by container ID (bounded)
	exited map[string]bool      // exits already reported, by ID (bounded)

	resolveMu sync.Mutex // one Resolve at a time
	tried     map[uint32]time.Time
	window    time.Time
	inWindow  int
}

// Exit is a container's exit as OnDie receives it.
type Exit struct {
	// Container is as it was listed; for one never listed, its ID, runtime, and the name and
	// image the runtime's exit event gave.
	Container
	Listed   bool
	ExitCode int
	// Started is when the runtime's start event said it started (zero when unknown); At when it
	// stopped (zero when unknown).
	Started, At time.Time
}

// maxPending bounds the start times and reported exits the watcher remembers.
const maxPending = 4096

type formerName struct {
	Name
	seq uint64 // age, for eviction
}

// NewWatcher returns a watcher over the runtimes rts. host is the host's netns inode (see
// HostNetns), named "host" by Names. selected picks the containers and pods to follow; empty means
// all containers, which is meant for naming only. onChange (may be nil) is called from the
// goroutine that calls Sync, Run or Resolve, with the complete, sorted set of netns inodes of the
// selected running containers, whenever that set changes. In follow-all mode containers that
// share the host's netns (--network host, hostNetwork pods) are left out of that set; an
// explicitly selected one is reported with the host's inode. onChange must not call Sync.
//
// The kernel gives a new netns the lowest free inode number, so a restarted container often gets
// the number its old netns had. A restart seen as events still makes two calls (the set without it
// on die, then with it on start), which tells the owner to re-attach per-netns state; a restart
// that happened while the event stream was down and is only found by the re-sync does not, when
// the number is the same.
func NewWatcher(rts []Runtime, host uint32, selected []Selector, onChange func(netns []uint32)) *Watcher {
	w := &Watcher{
		rts:      rts,
		host:     host,
		selected: selected,
		onChange: onChange,
		names:    NewNames(host),
		running:  make([]map[string]Container, len(rts)),
		synced:   make([]bool, len(rts)),
		listing:  make([]sync.Mutex, len(rts)),
		former:   map[uint32]formerName{},
		tried:    map[uint32]time.Time{},
		starts:   map[string]time.Time{},
		exited:   map[string]bool{},
	}
	for i := range w.running {
		w.running[i] = map[string]Container{}
	}
	return w
}

// Names returns the live table; it stays valid and current for the watcher's whole life.
func (w *Watcher) Names() *Names { return w.names }

// Runtimes returns the runtimes the watcher follows.
func (w *Watcher) Runtimes() []Runtime { return w.rts }

// Sync lists the running containers of every runtime, rebuilds the table and calls onChange with
// the current set (even when unchanged). A runtime that fails keeps what it had (nothing, at the
// first sync); the error names each runtime that failed.
func (w *Watcher) Sync(ctx context.Context) error {
	var errs []error
	for i := range w.rts {
		if err := w.refresh(ctx, i, false); err != nil {
			errs = append(errs, err)
		}
	}
	w.mu.Lock()
	w.publishLocked(true)
	w.mu.Unlock()
	return errors.Join(errs...)
}

// refresh lists one runtime's running containers and replaces its part of the state.
func (w *Watcher) refresh(ctx context.Context, i int, publish bool) error {
	rt := w.rts[i]
	w.listing[i].Lock()
	defer w.listing[i].Unlock()
	cs, err := rt.Running(ctx)
	if err != nil {
		if w.OnRuntime != nil && ctx.Err() == nil {
			w.OnRuntime(rt.Info(), false)
		}
		return err
	}
	if w.OnRuntime != nil {
		w.OnRuntime(rt.Info(), true)
	}
	m := make(map[string]Container, len(cs))
	for _, c := range cs {
		if c.Netns != 0 {
			m[c.ID] = c
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running[i], w.synced[i] = m, true
	if publish {
		w.publishLocked(false)
	}
	return nil
}

// Run follows every runtime until ctx is done. When a runtime's stream breaks it reports the
// failure through OnError, waits (backing off from 250 ms to 30 s), reconnects and re-syncs, so
// nothing that happened meanwhile is missed.
func (w *Watcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range w.rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.follow(ctx, i)
		}()
	}
	wg.Wait()
}

func (w *Watcher) follow(ctx context.Context, i int) {
	rt := w.rts[i]
	// The list that follows events runs beside the stream, not in it: one list can take a second
	// (a container whose process just exited is asked about again, askWhileExiting), and under
	// churn events keep coming meanwhile. Kicks that come while a list runs make one more list.
	kick := make(chan struct{}, 1)
	go w.relist(ctx, i, kick)
	backoff := minBackoff
	for {
		start := time.Now()
		err := rt.Watch(ctx, func(e Event) {
			w.apply(i, e)
			select {
			case kick <- struct{}{}:
			default:
			}
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > healthyStream {
			backoff = minBackoff
		}
		if w.OnRuntime != nil {
			w.OnRuntime(rt.Info(), false)
		}
		w.report(rt.Info(), fmt.Errorf("following %s at %s: %w (retrying in %v)", rt.Info().Kind, rt.Info().Endpoint, err, backoff))
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

// relist lists runtime i's running containers again each time it is kicked, until ctx ends.
func (w *Watcher) relist(ctx context.Context, i int, kick <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		if err := w.refresh(ctx, i, true); err != nil && ctx.Err() == nil {
			w.report(w.rts[i].Info(), err)
		}
	}
}

// apply handles one event: an exit is applied at once (so that a restart shows as a stop, then
// a start); the runtime's running set is then listed again (relist).
//
// Under load a container can start and stop before the list that follows its start event: its
// exit is still reported, with what the events said of it, so a recording's history is complete.
func (w *Watcher) apply(i int, e Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.Changed != "" {
		if len(w.starts) >= maxPending {
			clear(w.starts)
		}
		w.starts[e.Changed] = cmp.Or(e.At, time.Now())
		delete(w.exited, e.Changed) // a restart can exit again
	}
	if e.Stopped != "" {
		c, listed := w.running[i][e.Stopped]
		if !listed {
			c = Container{ID: e.Stopped, Name: e.Name, Image: e.Image, Runtime: w.rts[i].Info().Kind}
		}
		if !w.exited[e.Stopped] && (listed || e.Name != "") {
			if w.OnDie != nil {
				w.OnDie(Exit{Container: c, Listed: listed, ExitCode: e.ExitCode, Started: w.starts[e.Stopped], At: e.At})
			}
			if len(w.exited) >= maxPending {
				clear(w.exited)
			}
			w.exited[e.Stopped] = true
		}
		delete(w.starts, e.Stopped)
		if listed {
			delete(w.running[i], e.Stopped)
			w.publishLocked(false)
		}
	}
}

func (w *Watcher) report(rt Info, err error) {
	if w.OnError != nil {
		w.OnError(rt, err)
	}
}

// Resolve names a namespace the kernel side reported before any runtime did: a pod or container
// that started a moment ago. When inode is unknown it asks every runtime again, at most once per
// namespace every 2 s and 5 times a second in all, so a namespace nobody will ever name (one made
// with ip netns) costs little.
//
// A pod named before any of its containers ran (the sandbox alone) is asked about again the same
// way, so that its first events carry its containers' IDs.
func (w *Watcher) Resolve(ctx context.Context, inode uint32) (Name, bool) {
	if n, ok := w.names.Lookup(inode); ok && !podWithoutContainers(n) || inode == 0 {
		return n, ok
	}
	w.resolveMu.Lock()
	defer w.resolveMu.Unlock()
	if n, ok := w.names.Lookup(inode); ok && !podWithoutContainers(n) {
		return n, ok
	}
	now := time.Now()
	if t, ok := w.tried[inode]; ok && now.Sub(t) < resolveEvery {
		return w.names.Lookup(inode)
	}
	if now.Sub(w.window) >= time.Second {
		w.window, w.inWindow = now, 0
	}
	if w.inWindow >= resolveBurst {
		return w.names.Lookup(inode)
	}
	w.inWindow++
	if len(w.tried) > 4096 {
		clear(w.tried)
	}
	w.tried[inode] = now
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for i := range w.rts {
		_ = w.refresh(ctx, i, true) // a failure is the stream's to report
	}
	return w.names.Lookup(inode)
}

func podWithoutContainers(n Name) bool { return n.Pod != "" && n.ID == "" }

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
	m := make(map[uint32]Name, len(groups)+len(w.former))
	for ns, cs := range groups {
		m[ns] = DisplayName(cs)
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
				w.former[ns] = formerName{Name: e, seq: w.seq}
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
		m[ns] = f.Name
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

// liveLocked returns the running containers of all runtimes sorted by ID, one entry per ID (a
// container that two runtimes report, such as Docker and cri-dockerd, counts once, with its pod
// where one runtime knows it), leaving out any whose process has left its namespace. The kernel
// gives a freed namespace inode to the next namespace, and a runtime may report a new container's
// start before the old one's stop: until then the old container would claim the new one's inode
// (joined names, a trace filter on the wrong namespace).
func (w *Watcher) liveLocked() []Container {
	byID := map[string]Container{}
	for _, m := range w.running {
		for id, c := range m {
			if old, dup := byID[id]; dup && !old.Pod.IsZero() {
				continue
			}
			byID[id] = c
		}
	}
	live := make([]Container, 0, len(byID))
	for _, c := range byID {
		if c.Netns != 0 {
			if ino, err := NetnsInodeOfPath(c.NetnsPath); err != nil || ino != c.Netns {
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
		} else if !slices.ContainsFunc(w.selected, func(s Selector) bool { return s.Matches(c) }) {
			continue
		}
		set = append(set, c.Netns)
	}
	slices.Sort(set)
	return slices.Compact(set)
}
