// Package diagnose reads a recording and tells what happened: an incident report (per
// namespace, a timeline of connects, failures, resets and socket states, the remote endpoints
// and the syscall hotspots) and findings, each with the evidence in numbers, the command that
// verifies it by hand and the fix.
//
// The recording is read as a stream: memory follows the namespaces, the timeline's steps and the
// remote endpoints, never the number of events. Each of these is bounded, so that a hostile file
// costs at most a known amount: the timeline widens its steps, and rarely seen endpoints are
// dropped, and the report says so.
package diagnose

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/sockets"
	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/recording"
)

// Bounds of what a report keeps, far above what an honest recording needs (variables, so that
// tests can reach them).
var (
	// maxNamespaces: the kernel reuses a freed namespace's inode, so even a node with heavy
	// container churn shows about as many inodes as it ran namespaces at once.
	maxNamespaces = 1 << 14
	// maxCells bounds the timeline: namespaces times steps. Past it the steps widen.
	maxCells = 1 << 17
	// maxEndpoints bounds the remote endpoints counted over all namespaces. A server's peers
	// are one endpoint per connection (their ephemeral ports); past the bound the endpoints seen
	// least are dropped, which no finding can be about.
	maxEndpoints = 1 << 18
	// maxOwned bounds the endpoints whose owning processes are kept (clients' destinations and
	// servers' local endpoints, over all namespaces): the ones seen first keep theirs.
	maxOwned = 1 << 14
)

const (
	// topEstablished endpoints of each snapshot are kept for the leak detector.
	topEstablished = 16
	// maxTimeWait endpoints of a namespace's last snapshot are kept for its remote endpoints.
	maxTimeWait = 4096
	// maxProcesses and maxFacts bound the per-process and per-namespace facts kept.
	maxProcesses = 1 << 17
	maxFacts     = 1 << 17
	// maxEnded bounds the connections counted around one container's stop.
	maxEnded = 1 << 16
	// maxOwners is how many processes are named per endpoint.
	maxOwners = 4
	// quickClose is how soon after the handshake a connection's end counts as a refusal: a
	// server at its limit accepts, answers with an error and closes within milliseconds, while
	// a connection in use lives for requests. A second leaves room for a busy machine.
	quickClose = time.Second
)

var errTooManyNamespaces = errors.New("more network namespaces than one report holds: report a few at a time with --container or --netns")

// cell is what one namespace did during one step of the timeline, and its last snapshot in it.
type cell struct {
	connects, resets int
	failures         map[syscall.Errno]int
	snapAt           time.Time // zero: no snapshot in this step
	states           [16]int32
	est              []events.EndpointCount // the snapshot's ESTABLISHED sockets by remote endpoint, most first
}

// merge adds o, a later or earlier part of the same widened step.
func (c *cell) merge(o *cell) {
	c.connects += o.connects
	c.resets += o.resets
	for e, n := range o.failures {
		if c.failures == nil {
			c.failures = map[syscall.Errno]int{}
		}
		c.failures[e] += n
	}
	if o.snapAt.After(c.snapAt) {
		c.snapAt, c.states, c.est = o.snapAt, o.states, o.est
	}
}

// endpointCounts is what a namespace did with one remote endpoint.
type endpointCounts struct {
	connects, failures int // connect outcomes
	eaddrnotavail      int
	refused            int
	resets             int // connections cut by a reset
	established        int // transitions to ESTABLISHED
	opened, closed     int // SYN_SENT -> ESTABLISHED, ESTABLISHED -> anything else
	// Connections that left ESTABLISHED within quickClose of the handshake: all of them, and
	// those the peer closed first (ESTABLISHED -> CLOSE_WAIT: its FIN came before ours).
	quick, quickByPeer int
}

func (e *endpointCounts) weight() int {
	return e.connects + e.resets + e.established + e.opened + e.closed
}

// portUse is the most ephemeral ports held towards one destination in any snapshot.
type portUse struct {
	sockets.PortUse
	timeWait  int // of them in TIME_WAIT
	at        time.Time
	portRange [2]int
	twReuse   int
}

// kill is a container of the namespace that the runtime killed (exit code 137), with the
// connections that ended within stopWindow of it.
type kill struct {
	c     recording.Container
	ended map[connKey]bool // true: reset
}

type connKey struct{ s, d events.Endpoint }

// nsState is everything kept about one namespace.
type nsState struct {
	netns   uint32
	cells   map[int]*cell
	eps     map[events.Endpoint]*endpointCounts
	eaddr   int       // connects failed with EADDRNOTAVAIL
	eaddrAt time.Time // the first of them
	lastTW  []events.EndpointCount
	peak    portUse
	hasPeak bool
	// The most sockets to one destination with retransmissions pending in one snapshot.
	retrans     int
	retransDest string
	retransAt   time.Time
	kills       []*kill
	// The processes holding ESTABLISHED sockets to each destination, as the last snapshot that
	// had the destination among its top ones saw them.
	clients map[events.Endpoint][]Owner
	// Destinations whose connections reached a ceiling (leak_at_limit): the other rules about
	// the same destination leave them to that finding.
	atLimit map[events.Endpoint]bool
}

// Owner is a process holding sockets of one endpoint in a snapshot: with Pids > 1, several
// processes of the same name (a forking server such as PostgreSQL), Pid the lowest of them.
type Owner struct {
	Comm    string
	Pid     uint32
	Pids    int
	Sockets int
}

// view is the recording summarised for the detectors.
type view struct {
	f     *recording.File
	names *recording.Namer
	clock events.Clock
	only  map[uint32]bool // nil: all

	lo, hi time.Time     // the timeline spans the recording's start and every block's time
	step   time.Duration // its width: the recording's interval, widened to fit the bounds
	steps  int

	netns     []uint32 // every namespace with events or snapshots, in first-seen order
	ns        map[uint32]*nsState
	cells     int
	endpoints int
	dropFloor int // endpoints seen fewer times than this were dropped (0: none)
	dropped   int
	// Why the steps are wider than the recording's interval.
	gaps, crowded bool

	facts     map[uint32]recording.NetnsFacts // the last of each namespace
	processes map[uint32]recording.Process    // the last of each process
	syscalls  *recording.SyscallCounts        // the last
	kills     map[uint32][]recording.Container
	// The processes holding the ESTABLISHED sockets of the busiest local endpoints (servers),
	// in any namespace, as last seen.
	servers map[events.Endpoint][]Owner
	owned   int // entries in servers and in every namespace's clients
	stacks  stackView
}

func endpoint(a events.Endpoint) string { return a.String() }

// isReset is a connection cut without the FIN handshake: ESTABLISHED or CLOSE_WAIT straight to
// CLOSE (a reset received or sent, or an abort), as the kernel's EstabResets counts them.
func isReset(e *trace.Event) bool {
	return e.Kind&trace.KindState != 0 && e.NewState == events.StateClose &&
		(e.OldState == events.StateEstablished || e.OldState == events.StateCloseWait)
}

// newView lays out the timeline from what the first pass saw: it spans the recording's start
// and every block, in steps of the interval, at most one step per block (an honest recorder
// writes several blocks every interval; a gap means it was stopped or the clock jumped).
func newView(f *recording.File, only map[uint32]bool) *view {
	v := &view{f: f, names: f.Namer(), clock: f.Clock(), only: only, ns: map[uint32]*nsState{},
		facts: map[uint32]recording.NetnsFacts{}, processes: map[uint32]recording.Process{}, kills: map[uint32][]recording.Container{},
		servers: map[events.Endpoint][]Owner{}}
	v.lo, v.hi = f.Meta.Start, f.Meta.Start
	if !f.Earliest.IsZero() && f.Earliest.Before(v.lo) {
		v.lo = f.Earliest
	}
	if f.Latest.After(v.hi) {
		v.hi = f.Latest
	}
	v.step = f.Meta.Interval
	span := v.hi.Sub(v.lo)
	if n, blocks := uint64(span/v.step), uint64(f.Blocks); n > blocks && blocks > 0 {
		// A whole number of intervals per step, at most one step per block.
		m := (n + blocks - 1) / blocks
		if m > uint64(math.MaxInt64/v.step) {
			v.step = math.MaxInt64
		} else {
			v.step *= time.Duration(m)
		}
		v.gaps = true
	}
	v.steps = int(span/v.step) + 1
	// The containers killed by their runtime: the connections that end around the stop say
	// whether it was clean. Each container's last recorded state counts.
	for _, c := range f.Containers.Containers() {
		if c.Netns != 0 && !c.Stopped.IsZero() && c.ExitCode == exitKilled {
			v.kills[c.Netns] = append(v.kills[c.Netns], c)
		}
	}
	return v
}

// index is the timeline step of a moment; moments outside the recording's span (an event read
// before its clock was stepped) go to the first or last step.
func (v *view) index(at time.Time) int {
	d := at.Sub(v.lo)
	if d < 0 {
		return 0
	}
	return min(int(d/v.step), v.steps-1)
}

// state returns a namespace's state, nil when it is not reported (--container, --netns).
func (v *view) state(netns uint32) (*nsState, error) {
	if s := v.ns[netns]; s != nil {
		return s, nil
	}
	if v.only != nil && !v.only[netns] {
		return nil, nil
	}
	if len(v.ns) >= maxNamespaces {
		return nil, errTooManyNamespaces
	}
	s := &nsState{netns: netns, cells: map[int]*cell{}, eps: map[events.Endpoint]*endpointCounts{},
		clients: map[events.Endpoint][]Owner{}, atLimit: map[events.Endpoint]bool{}}
	for _, c := range v.kills[netns] {
		s.kills = append(s.kills, &kill{c: c, ended: map[connKey]bool{}})
	}
	v.ns[netns] = s
	v.netns = append(v.netns, netns)
	return s, nil
}

// cell returns a namespace's cell of the step of at, widening the timeline when there are too
// many cells.
func (v *view) cell(s *nsState, at time.Time) *cell {
	i := v.index(at)
	if c := s.cells[i]; c != nil {
		return c
	}
	if v.cells >= maxCells && v.steps > 1 {
		v.widen()
		i = v.index(at)
		if c := s.cells[i]; c != nil {
			return c
		}
	}
	c := &cell{}
	s.cells[i] = c
	v.cells++
	return c
}

// widen doubles the steps' width until the cells fit in half the bound, merging neighbours.
func (v *view) widen() {
	for v.cells > maxCells/2 && v.steps > 1 {
		v.crowded = true
		v.step *= 2
		v.steps = int(v.hi.Sub(v.lo)/v.step) + 1
		v.cells = 0
		for _, s := range v.ns {
			merged := make(map[int]*cell, len(s.cells)/2+1)
			for i, c := range s.cells {
				if m := merged[i/2]; m != nil {
					m.merge(c)
				} else {
					merged[i/2] = c
				}
			}
			s.cells = merged
			v.cells += len(merged)
		}
	}
}

// endpoint returns a namespace's counts of one remote endpoint, dropping the endpoints seen least
// when there are too many.
func (v *view) endpoint(s *nsState, ep events.Endpoint) *endpointCounts {
	if e := s.eps[ep]; e != nil {
		return e
	}
	if v.endpoints >= maxEndpoints {
		v.dropRare()
	}
	e := &endpointCounts{}
	s.eps[ep] = e
	v.endpoints++
	return e
}

// dropRare forgets the endpoints seen fewer times than a floor that doubles until half the
// bound is free: what is dropped is too rare for any finding.
func (v *view) dropRare() {
	for v.endpoints > maxEndpoints/2 {
		v.dropFloor = max(2*v.dropFloor, 4)
		for _, s := range v.ns {
			for ep, e := range s.eps {
				if e.weight() < v.dropFloor {
					delete(s.eps, ep)
					v.endpoints--
					v.dropped++
				}
			}
		}
	}
}

// addEvents counts one chunk of events.
func (v *view) addEvents(evs []trace.Event) error {
	var s *nsState
	for i := range evs {
		e := &evs[i]
		if s == nil || s.netns != e.Netns {
			var err error
			if s, err = v.state(e.Netns); err != nil {
				return err
			}
			if s == nil {
				continue
			}
		}
		at := v.clock.Wall(e.Mono)
		c := v.cell(s, at)
		d := events.Endpoint{Addr: e.Daddr, Port: e.Dport}
		if e.Kind&trace.KindConnect != 0 {
			c.connects++
			ep := v.endpoint(s, d)
			ep.connects++
			if e.Errno != 0 {
				if c.failures == nil {
					c.failures = map[syscall.Errno]int{}
				}
				c.failures[e.Errno]++
				ep.failures++
				switch e.Errno {
				case syscall.EADDRNOTAVAIL:
					ep.eaddrnotavail++
					if s.eaddr == 0 || at.Before(s.eaddrAt) {
						s.eaddrAt = at
					}
					s.eaddr++
				case syscall.ECONNREFUSED:
					ep.refused++
				}
			}
		}
		if e.Kind&trace.KindState == 0 {
			continue
		}
		if isReset(e) {
			c.resets++
			v.endpoint(s, d).resets++
		}
		switch {
		case e.NewState == events.StateEstablished:
			ep := v.endpoint(s, d)
			ep.established++
			if e.OldState == events.StateSynSent {
				ep.opened++
			}
		case e.OldState == events.StateEstablished:
			ep := v.endpoint(s, d)
			ep.closed++
			// PrevState 0: the socket was first seen mid-life, its age is unknown.
			if e.PrevState > 0 && e.PrevState < quickClose {
				ep.quick++
				if e.NewState == events.StateCloseWait {
					ep.quickByPeer++
				}
			}
		}
		if len(s.kills) > 0 && (e.OldState == events.StateEstablished || e.OldState == events.StateCloseWait) {
			for _, k := range s.kills {
				if at.Before(k.c.Stopped.Add(-stopWindow)) || at.After(k.c.Stopped.Add(stopWindow)) {
					continue
				}
				key := connKey{events.Endpoint{Addr: e.Saddr, Port: e.Sport}, d}
				if _, ok := k.ended[key]; ok || len(k.ended) < maxEnded {
					k.ended[key] = k.ended[key] || e.NewState == events.StateClose
				}
			}
		}
	}
	return nil
}

// addSnapshot summarises one namespace's sockets at one moment: the counts the timeline and the
// detectors read, not the sockets.
func (v *view) addSnapshot(snap *recording.SocketSnapshot) error {
	s, err := v.state(snap.Netns)
	if s == nil || err != nil {
		return err
	}
	socks, err := snap.Decode()
	if err != nil {
		return fmt.Errorf("snapshot of netns %d at %s: %w", snap.Netns, snap.Time.Format(time.RFC3339), err)
	}
	sum := sockets.Summarize(socks, snap.PortRange, snap.TWReuse, len(socks))
	c := v.cell(s, snap.Time)
	if !snap.Time.Before(c.snapAt) {
		c.snapAt = snap.Time
		c.states = [16]int32{}
		for st, n := range sum.ByState {
			c.states[st&15] += int32(n)
		}
		c.est = slices.Clone(sum.Established[:min(topEstablished, len(sum.Established))])
	}
	s.lastTW = slices.Clone(sum.TimeWait[:min(maxTimeWait, len(sum.TimeWait))])
	v.addOwners(s, socks, c.est)
	if snap.PortRange[0] > 0 && len(sum.PortUse) > 0 {
		top := sum.PortUse[0] // most used first
		if !s.hasPeak || top.Used > s.peak.Used {
			s.peak = portUse{top, count(sum.TimeWait, top.Endpoint), snap.Time, sum.PortRange, sum.TWReuse}
			s.hasPeak = true
		}
	}
	retrans := map[events.Endpoint]int{}
	for _, k := range socks {
		if k.Retransmits > 0 && k.Dport != 0 {
			retrans[events.Endpoint{Addr: k.Daddr, Port: k.Dport}]++
		}
	}
	for ep, n := range retrans {
		d := endpoint(ep)
		if n > s.retrans || n == s.retrans && s.retransAt.Equal(snap.Time) && d < s.retransDest {
			s.retrans, s.retransDest, s.retransAt = n, d, snap.Time
		}
	}
	return nil
}

// addOwners keeps who holds the ESTABLISHED sockets of a snapshot: the clients of its top
// destinations, and the servers of its busiest local endpoints (a server's accepted sockets all
// share its address and port).
func (v *view) addOwners(s *nsState, socks []sockets.Socket, top []events.EndpointCount) {
	type key struct {
		ep   events.Endpoint
		comm string
	}
	type agg struct {
		pids    map[uint32]bool
		sockets int
	}
	want := map[events.Endpoint]bool{}
	for _, ec := range top {
		want[ec.Endpoint] = true
	}
	clients, servers := map[key]*agg{}, map[key]*agg{}
	local := map[events.Endpoint]int{}
	add := func(m map[key]*agg, k key, pid uint32) {
		a := m[k]
		if a == nil {
			a = &agg{pids: map[uint32]bool{}}
			m[k] = a
		}
		a.pids[pid] = true
		a.sockets++
	}
	for _, k := range socks {
		if k.State != events.StateEstablished || k.Pid == 0 {
			continue
		}
		if d := (events.Endpoint{Addr: k.Daddr, Port: k.Dport}); want[d] {
			add(clients, key{d, k.Comm}, k.Pid)
		}
		local[events.Endpoint{Addr: k.Saddr, Port: k.Sport}]++
	}
	busiest := map[events.Endpoint]bool{}
	for _, ec := range topEndpointCounts(local, topEstablished) {
		busiest[ec.Endpoint] = true
	}
	for _, k := range socks {
		if l := (events.Endpoint{Addr: k.Saddr, Port: k.Sport}); k.State == events.StateEstablished && k.Pid != 0 && busiest[l] {
			add(servers, key{l, k.Comm}, k.Pid)
		}
	}
	collect := func(m map[key]*agg, keep map[events.Endpoint]bool, into map[events.Endpoint][]Owner) {
		got := map[events.Endpoint][]Owner{}
		for k, a := range m {
			if !keep[k.ep] {
				continue
			}
			o := Owner{Comm: k.comm, Pid: math.MaxUint32, Pids: len(a.pids), Sockets: a.sockets}
			for p := range a.pids {
				o.Pid = min(o.Pid, p)
			}
			got[k.ep] = append(got[k.ep], o)
		}
		for ep, os := range got {
			if _, ok := into[ep]; !ok {
				if v.owned >= maxOwned {
					continue
				}
				v.owned++
			}
			slices.SortFunc(os, func(a, b Owner) int {
				return cmp.Or(cmp.Compare(b.Sockets, a.Sockets), strings.Compare(a.Comm, b.Comm))
			})
			into[ep] = os[:min(maxOwners, len(os))]
		}
	}
	collect(clients, want, s.clients)
	collect(servers, busiest, v.servers)
}

// topEndpointCounts is the n endpoints with the largest counts, most first.
func topEndpointCounts(m map[events.Endpoint]int, n int) []events.EndpointCount {
	out := make([]events.EndpointCount, 0, len(m))
	for ep, c := range m {
		out = append(out, events.EndpointCount{Endpoint: ep, Count: c})
	}
	slices.SortFunc(out, func(a, b events.EndpointCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), a.Endpoint.Addr.Compare(b.Endpoint.Addr), cmp.Compare(a.Endpoint.Port, b.Endpoint.Port))
	})
	return out[:min(n, len(out))]
}

func (v *view) addFacts(f *recording.Facts) {
	for _, n := range f.Netns {
		if _, ok := v.facts[n.Netns]; ok || len(v.facts) < maxFacts {
			v.facts[n.Netns] = n
		}
	}
	for _, p := range f.Processes {
		if _, ok := v.processes[p.Pid]; ok || len(v.processes) < maxProcesses {
			v.processes[p.Pid] = p
		}
	}
}

// count returns an endpoint's count in a summary list (0 when absent).
func count(list []events.EndpointCount, ep events.Endpoint) int {
	for _, ec := range list {
		if ec.Endpoint == ep {
			return ec.Count
		}
	}
	return 0
}

// snapshots returns a namespace's cells that hold a snapshot, in time order.
func (s *nsState) snapshots() []*cell {
	var out []*cell
	for _, c := range s.cells {
		if !c.snapAt.IsZero() {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *cell) int { return a.snapAt.Compare(b.snapAt) })
	return out
}

// name is a namespace's display name over the whole recording (its last name).
func (v *view) name(ns uint32) events.Name {
	n, ok := v.names.Lookup(ns, v.f.Last)
	if !ok {
		if n.Name = v.f.Meta.NetnsNames[ns]; n.Name == "" {
			n.Name = fmt.Sprintf("netns %d", ns)
		}
	}
	return n
}

// container returns the recorded container that last had ns, if any: an app container rather
// than its pod's sandbox, which only holds the namespace.
func (v *view) container(ns uint32) (recording.Container, bool) {
	var best recording.Container
	found := false
	v.f.Containers.Each(func(c recording.Container) {
		if c.Netns != ns {
			return
		}
		if !found || best.Sandbox && !c.Sandbox || best.Sandbox == c.Sandbox && !c.Started.Before(best.Started) {
			best, found = c, true
		}
	})
	return best, found
}

// Summarize builds the incident report of a recording, reading its events and snapshots once.
// only (nil: all) limits it to some namespaces; top bounds the per-namespace lists.
func Summarize(f *recording.File, source string, only map[uint32]bool, top int) (*Report, error) {
	v := newView(f, only)
	err := f.Scan(recording.Visitor{
		Events: func(_ time.Time, evs []trace.Event) error { return v.addEvents(evs) },
		Sockets: func(s *recording.SocketSnapshot) error {
			return v.addSnapshot(s)
		},
		Syscalls: func(_ time.Time, s *recording.SyscallCounts) error {
			c := *s
			v.syscalls = &c
			return nil
		},
		Facts: func(_ time.Time, fa *recording.Facts) error {
			v.addFacts(fa)
			return nil
		},
		Stacks: func(_ time.Time, st *recording.Stacks) error {
			v.stacks.add(st, v.only)
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	r := &Report{Source: source, Hostname: f.Meta.Hostname, Kernel: f.Meta.Kernel, Start: v.lo,
		End: v.hi, Interval: v.step, Lost: f.Lost.Total()}
	switch {
	case v.crowded:
		r.Notes = append(r.Notes, fmt.Sprintf("the timeline's steps are %s, not the recording's %s: %d namespaces over more steps would pass the %d steps a report keeps", v.step, f.Meta.Interval, len(v.ns), maxCells))
	case v.gaps:
		r.Notes = append(r.Notes, fmt.Sprintf("the timeline's steps are %s, not the recording's %s: its %d blocks span %s, more than the recorder writes in that time (it was stopped, or the clock jumped)", v.step, f.Meta.Interval, f.Blocks, v.hi.Sub(v.lo)))
	}
	if steps := f.ClockSteps; len(steps) > 0 {
		back := slices.MaxFunc(steps, func(a, b recording.ClockStep) int { return cmp.Compare(a.Back, b.Back) })
		r.Notes = append(r.Notes, fmt.Sprintf("the clock stepped back %s at %s (%d times in all): snapshots and blocks after it are placed as the clock read them; event times are not affected",
			back.Back.Round(time.Millisecond), back.At.Format(time.RFC3339), len(steps)))
	}
	if v.dropped > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d remote endpoints seen fewer than %d times were left out, to bound memory", v.dropped, v.dropFloor))
	}
	if n := v.stacks.note(); n != "" {
		r.Notes = append(r.Notes, n)
	}
	for _, ns := range v.netns {
		t := v.target(v.ns[ns], top)
		t.Stacks, t.StacksOther = v.stacks.top(ns, top)
		r.Targets = append(r.Targets, t)
	}
	hostFirst := func(a, b Target) int {
		ah, bh := a.Netns == f.Meta.HostNetns, b.Netns == f.Meta.HostNetns
		if ah != bh {
			if ah {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	}
	slices.SortStableFunc(r.Targets, hostFirst)
	r.Findings = v.detect()
	return r, nil
}

// target is one namespace's part of the report.
func (v *view) target(s *nsState, top int) Target {
	ns := s.netns
	t := Target{Netns: ns}
	n := v.name(ns)
	t.Name, t.ID, t.K8sNamespace, t.K8sPod = n.Name, n.ID, n.Namespace, n.Pod
	if c, ok := v.container(ns); ok {
		t.Image = c.Image
		if c.Started.After(v.f.Meta.Start.Add(time.Second)) {
			t.Started = c.Started
		}
		t.Stopped, t.ExitCode = c.Stopped, c.ExitCode
	}
	if f, ok := v.facts[ns]; ok {
		t.Facts = NetnsFacts{PortRange: f.PortRange, TWReuse: f.TWReuse, Somaxconn: f.Somaxconn}
	}
	t.Timeline = make([]Step, v.steps)
	for i := range t.Timeline {
		t.Timeline[i].Start = v.lo.Add(time.Duration(i) * v.step)
	}
	for i, c := range s.cells {
		st := &t.Timeline[i]
		st.Connects, st.Resets = c.connects, c.resets
		for e, k := range c.failures {
			if st.Failures == nil {
				st.Failures = map[string]int{}
			}
			st.Failures[events.ErrnoName(e)] += k
		}
		if !c.snapAt.IsZero() {
			st.HasSnapshot = true
			st.States = map[string]int{}
			for state, k := range c.states {
				if k > 0 {
					st.States[events.State(state).String()] = int(k)
				}
			}
		}
	}
	remotes := map[string]*RemoteCount{}
	remote := func(ep string) *RemoteCount {
		if remotes[ep] == nil {
			remotes[ep] = &RemoteCount{Endpoint: ep}
		}
		return remotes[ep]
	}
	for ep, e := range s.eps {
		if e.connects > 0 {
			rc := remote(endpoint(ep))
			rc.Connects, rc.Failures = e.connects, e.failures
		}
	}
	for _, ec := range s.lastTW {
		remote(endpoint(ec.Endpoint)).TimeWait = ec.Count
	}
	for _, rc := range remotes {
		t.TopRemotes = append(t.TopRemotes, *rc)
	}
	slices.SortFunc(t.TopRemotes, func(a, b RemoteCount) int {
		return cmp.Or(cmp.Compare(b.Connects+b.TimeWait, a.Connects+a.TimeWait), strings.Compare(a.Endpoint, b.Endpoint))
	})
	t.TopRemotes = t.TopRemotes[:min(top, len(t.TopRemotes))]
	t.Syscalls, t.Errors = v.syscallHotspots(ns, top)
	return t
}

// syscallHotspots reads the last syscall counts (cumulative since the start) of one namespace.
func (v *view) syscallHotspots(ns uint32, top int) ([]SyscallCount, []SyscallErrors) {
	if v.syscalls == nil {
		return nil, nil
	}
	arch := v.f.Meta.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	var counts []SyscallCount
	for _, c := range v.syscalls.Counts {
		if c.Netns == ns {
			counts = append(counts, SyscallCount{Comm: c.Comm, Pid: c.Tgid, Syscall: events.SyscallName(arch, c.Nr), Count: c.Count, Errors: c.Errors})
		}
	}
	slices.SortFunc(counts, func(a, b SyscallCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Syscall, b.Syscall), cmp.Compare(a.Pid, b.Pid))
	})
	var errs []SyscallErrors
	for _, e := range v.syscalls.Errors {
		if e.Netns == ns {
			errs = append(errs, SyscallErrors{Comm: e.Comm, Pid: e.Tgid, Syscall: events.SyscallName(arch, e.Nr), Errno: events.ErrnoName(e.Errno), Count: e.Count})
		}
	}
	slices.SortFunc(errs, func(a, b SyscallErrors) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Syscall, b.Syscall), strings.Compare(a.Errno, b.Errno), cmp.Compare(a.Pid, b.Pid))
	})
	return counts[:min(top, len(counts))], errs[:min(top, len(errs))]
}
