// Package diagnose reads a recording and tells what happened: an incident report (per
// namespace, a timeline of connects, failures, resets and socket states, the remote endpoints
// and the syscall hotspots) and findings, each with the evidence in numbers, the command that
// verifies it by hand and the fix.
package diagnose

import (
	"cmp"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/recording"
)

// view is a recording prepared for the detectors: events and snapshots per namespace, in wall
// time.
type view struct {
	rec     *recording.Recording
	names   *recording.Namer
	clock   events.Clock
	netns   []uint32 // every namespace with events or snapshots, in first-seen order
	events  map[uint32][]timedEvent
	sockets map[uint32][]snapshot
	only    map[uint32]bool // nil: all
}

type timedEvent struct {
	at time.Time
	e  events.Event
}

// snapshot is one namespace's sockets at one moment, with the summary `sockets --summary`
// shows (every endpoint kept): the counts the detectors read.
type snapshot struct {
	at    time.Time
	socks []events.Socket
	sum   events.Summary
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

func newView(rec *recording.Recording, only map[uint32]bool) (*view, error) {
	v := &view{rec: rec, names: rec.Namer(), clock: rec.Clock(), only: only,
		events: map[uint32][]timedEvent{}, sockets: map[uint32][]snapshot{}}
	seen := map[uint32]bool{}
	add := func(ns uint32) bool {
		if only != nil && !only[ns] {
			return false
		}
		if !seen[ns] {
			seen[ns] = true
			v.netns = append(v.netns, ns)
		}
		return true
	}
	for i := range rec.Sockets {
		s := &rec.Sockets[i]
		if !add(s.Netns) {
			continue
		}
		socks, err := s.Decode()
		if err != nil {
			return nil, fmt.Errorf("snapshot of netns %d at %s: %w", s.Netns, s.Time.Format(time.RFC3339), err)
		}
		sum := events.Summarize(socks, s.PortRange, s.TWReuse, len(socks))
		v.sockets[s.Netns] = append(v.sockets[s.Netns], snapshot{s.Time, socks, sum})
	}
	for _, e := range rec.Events {
		if add(e.Netns) {
			v.events[e.Netns] = append(v.events[e.Netns], timedEvent{v.clock.Wall(e.Mono).UTC(), e})
		}
	}
	return v, nil
}

// name is a namespace's display name over the whole recording (its last name).
func (v *view) name(ns uint32) events.Name {
	n, ok := v.names.Lookup(ns, v.rec.Last)
	if !ok {
		if n.Name = v.rec.Meta.NetnsNames[ns]; n.Name == "" {
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
	for _, s := range v.rec.Containers {
		for _, c := range s.Value.List {
			if c.Netns != ns {
				continue
			}
			if !found || best.Sandbox && !c.Sandbox || best.Sandbox == c.Sandbox && !c.Started.Before(best.Started) {
				best, found = c, true
			}
		}
	}
	return best, found
}

// facts returns the last recorded settings of ns.
func (v *view) facts(ns uint32) (recording.NetnsFacts, bool) {
	for i := len(v.rec.Facts) - 1; i >= 0; i-- {
		for _, f := range v.rec.Facts[i].Value.Netns {
			if f.Netns == ns {
				return f, true
			}
		}
	}
	return recording.NetnsFacts{}, false
}

func endpoint(a netip.Addr, port uint16) string { return netip.AddrPortFrom(a, port).String() }

// isReset is a connection cut without the FIN handshake: ESTABLISHED or CLOSE_WAIT straight to
// CLOSE (a reset received or sent, or an abort), as the kernel's EstabResets counts them.
func isReset(e *events.Event) bool {
	return e.Kind&events.KindState != 0 && e.NewState == events.StateClose &&
		(e.OldState == events.StateEstablished || e.OldState == events.StateCloseWait)
}

// Summarize builds the incident report of a recording. only (nil: all) limits it to some
// namespaces; top bounds the per-namespace lists.
func Summarize(rec *recording.Recording, source string, only map[uint32]bool, top int) (*Report, error) {
	v, err := newView(rec, only)
	if err != nil {
		return nil, err
	}
	r := &Report{Source: source, Hostname: rec.Meta.Hostname, Kernel: rec.Meta.Kernel, Start: rec.Meta.Start,
		End: rec.Last, Interval: rec.Meta.Interval, Lost: rec.Lost.Total()}
	if r.Interval <= 0 {
		r.Interval = 5 * time.Second
	}
	steps := int(r.End.Sub(r.Start)/r.Interval) + 1
	for _, ns := range v.netns {
		t := Target{Netns: ns}
		n := v.name(ns)
		t.Name, t.ID, t.K8sNamespace, t.K8sPod = n.Name, n.ID, n.Namespace, n.Pod
		if c, ok := v.container(ns); ok {
			t.Image = c.Image
			if c.Started.After(rec.Meta.Start.Add(time.Second)) {
				t.Started = c.Started
			}
			t.Stopped, t.ExitCode = c.Stopped, c.ExitCode
		}
		if f, ok := v.facts(ns); ok {
			t.Facts = NetnsFacts{PortRange: f.PortRange, TWReuse: f.TWReuse, Somaxconn: f.Somaxconn}
		}
		t.Timeline = make([]Step, steps)
		for i := range t.Timeline {
			t.Timeline[i].Start = r.Start.Add(time.Duration(i) * r.Interval)
		}
		step := func(at time.Time) *Step {
			i := int(at.Sub(r.Start) / r.Interval)
			return &t.Timeline[min(max(i, 0), steps-1)]
		}
		remotes := map[string]*RemoteCount{}
		remote := func(ep string) *RemoteCount {
			if remotes[ep] == nil {
				remotes[ep] = &RemoteCount{Endpoint: ep}
			}
			return remotes[ep]
		}
		for _, te := range v.events[ns] {
			e := &te.e
			s := step(te.at)
			if e.Kind&events.KindConnect != 0 {
				s.Connects++
				rc := remote(endpoint(e.Daddr, e.Dport))
				rc.Connects++
				if e.Errno != 0 {
					if s.Failures == nil {
						s.Failures = map[string]int{}
					}
					s.Failures[events.ErrnoName(e.Errno)]++
					rc.Failures++
				}
			}
			if isReset(e) {
				s.Resets++
			}
		}
		snaps := v.sockets[ns]
		for _, sn := range snaps {
			s := step(sn.at)
			s.HasSnapshot = true
			s.States = map[string]int{}
			for st, n := range sn.sum.ByState {
				s.States[st.String()] = n
			}
		}
		if len(snaps) > 0 {
			for _, ec := range snaps[len(snaps)-1].sum.TimeWait {
				remote(ec.Endpoint.String()).TimeWait = ec.Count
			}
		}
		for _, rc := range remotes {
			t.TopRemotes = append(t.TopRemotes, *rc)
		}
		slices.SortFunc(t.TopRemotes, func(a, b RemoteCount) int {
			return cmp.Or(cmp.Compare(b.Connects+b.TimeWait, a.Connects+a.TimeWait), strings.Compare(a.Endpoint, b.Endpoint))
		})
		t.TopRemotes = t.TopRemotes[:min(top, len(t.TopRemotes))]
		t.Syscalls, t.Errors = syscallHotspots(rec, ns, top)
		r.Targets = append(r.Targets, t)
	}
	hostFirst := func(a, b Target) int {
		ah, bh := a.Netns == rec.Meta.HostNetns, b.Netns == rec.Meta.HostNetns
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

// syscallHotspots reads the last syscall counts (cumulative since the start) of one namespace.
func syscallHotspots(rec *recording.Recording, ns uint32, top int) ([]SyscallCount, []SyscallErrors) {
	if len(rec.Syscalls) == 0 {
		return nil, nil
	}
	arch := rec.Meta.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	last := rec.Syscalls[len(rec.Syscalls)-1].Value
	var counts []SyscallCount
	for _, c := range last.Counts {
		if c.Netns == ns {
			counts = append(counts, SyscallCount{Comm: c.Comm, Pid: c.Tgid, Syscall: events.SyscallName(arch, c.Nr), Count: c.Count, Errors: c.Errors})
		}
	}
	slices.SortFunc(counts, func(a, b SyscallCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Syscall, b.Syscall), cmp.Compare(a.Pid, b.Pid))
	})
	var errs []SyscallErrors
	for _, e := range last.Errors {
		if e.Netns == ns {
			errs = append(errs, SyscallErrors{Comm: e.Comm, Pid: e.Tgid, Syscall: events.SyscallName(arch, e.Nr), Errno: events.ErrnoName(e.Errno), Count: e.Count})
		}
	}
	slices.SortFunc(errs, func(a, b SyscallErrors) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Syscall, b.Syscall), strings.Compare(a.Errno, b.Errno), cmp.Compare(a.Pid, b.Pid))
	})
	return counts[:min(top, len(counts))], errs[:min(top, len(errs))]
}
