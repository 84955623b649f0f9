package recording

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sockscope/sockscope/containers"
)

// maxVersions bounds the container history a reader keeps: every start, stop and exit code is a
// version. A busy node that starts 30 containers a second makes about 50,000 in ten minutes.
const maxVersions = 1 << 18

// History is the recording's container history: every state each container was recorded in,
// with the containers blocks during which that state held. A full list (BlockContainers) says
// which containers exist; a list of changes (BlockContainerChanges) updates only those it names.
// An unchanged container costs nothing however often it is listed, so memory follows the changes,
// not the blocks times the containers.
type History struct {
	versions []version
	current  map[string]int // ID -> its version in force, if any
	order    []string       // IDs in the order first seen
	seen     map[string]bool
	times    []time.Time // of each containers block, in file order
}

// version is one state of one container, in force from containers block from (an index into
// times) until block to (exclusive; -1: still in force at the end).
type version struct {
	c        Container
	from, to int
}

func newHistory() *History { return &History{current: map[string]int{}, seen: map[string]bool{}} }

// Len is the number of containers blocks applied.
func (h *History) Len() int { return len(h.times) }

// apply adds one containers block: a full list (every container not in it is gone from then on)
// or only changes.
func (h *History) apply(at time.Time, list []Container, full bool) error {
	j := len(h.times)
	h.times = append(h.times, at)
	listed := make(map[string]bool, len(list))
	for _, c := range list {
		listed[c.ID] = true
		if i, ok := h.current[c.ID]; ok {
			if sameContainer(h.versions[i].c, c) {
				continue
			}
			h.versions[i].to = j
		} else if !h.seen[c.ID] {
			h.seen[c.ID] = true
			h.order = append(h.order, c.ID)
		}
		if len(h.versions) >= maxVersions {
			return fmt.Errorf("more than %d container states: more than a recording holds", maxVersions)
		}
		h.current[c.ID] = len(h.versions)
		h.versions = append(h.versions, version{c: c, from: j, to: -1})
	}
	if full {
		for id, i := range h.current {
			if !listed[id] {
				h.versions[i].to = j
				delete(h.current, id)
			}
		}
	}
	return nil
}

// sameContainer reports whether a and b record the same state: a list that repeats it is no
// change.
func sameContainer(a, b Container) bool {
	return maps.Equal(a.Labels, b.Labels) && a.key() == b.key()
}

// Containers returns every container the recording saw, in its latest state, in the order they
// were first seen.
func (h *History) Containers() []Container {
	latest := map[string]Container{}
	for _, v := range h.versions {
		latest[v.c.ID] = v.c
	}
	out := make([]Container, 0, len(h.order))
	for _, id := range h.order {
		out = append(out, latest[id])
	}
	return out
}

// Each calls f with every recorded state of every container, in file order.
func (h *History) Each(f func(Container)) {
	for _, v := range h.versions {
		f(v.c)
	}
}

// Namer names network namespaces the way the live commands did when an event happened: the
// containers or pod running in the namespace then, or the last ones that ran in it.
type Namer struct {
	h    *History
	host uint32
	segs map[uint32][]segment // per namespace, built at its first lookup
}

// segment is a run of containers blocks [from, to) during which a namespace had one name.
type segment struct {
	from, to int
	name     containers.Name
}

// NewNamer returns a namer over a container history; host is the host's namespace.
func NewNamer(h *History, host uint32) *Namer {
	return &Namer{h: h, host: host, segs: map[uint32][]segment{}}
}

// Lookup returns the name of netns at time at; ok is false when no recorded container ever had
// it ("host" for the host namespace). The containers block in force at that time decides, then
// the later ones (a container's block can trail its first events), then the earlier ones.
func (n *Namer) Lookup(netns uint32, at time.Time) (containers.Name, bool) {
	if netns == n.host && netns != 0 {
		return containers.HostName, true
	}
	if n.h == nil || len(n.h.times) == 0 || netns == 0 {
		return containers.Name{}, false
	}
	segs, ok := n.segs[netns]
	if !ok {
		segs = n.segments(netns)
		n.segs[netns] = segs
	}
	i := sort.Search(len(n.h.times), func(i int) bool { return n.h.times[i].After(at) }) - 1
	from := max(i, 0)
	if k := sort.Search(len(segs), func(k int) bool { return segs[k].to > from }); k < len(segs) {
		return segs[k].name, true
	}
	if k := sort.Search(len(segs), func(k int) bool { return segs[k].from >= i }) - 1; k >= 0 {
		return segs[k].name, true
	}
	return containers.Name{}, false
}

// segments sweeps the versions of one namespace: between two blocks where a version of it
// starts or ends, the containers in force name it, the running ones, or the one that stopped
// last.
func (n *Namer) segments(netns uint32) []segment {
	end := len(n.h.times)
	var vs []version
	var cuts []int
	for _, v := range n.h.versions {
		if v.c.Netns != netns {
			continue
		}
		if v.to < 0 {
			v.to = end
		}
		vs = append(vs, v)
		cuts = append(cuts, v.from, v.to)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	var out []segment
	for k := 0; k+1 < len(cuts); k++ {
		from, to := cuts[k], cuts[k+1]
		var running []containers.Container
		var last *Container
		for i := range vs {
			v := &vs[i]
			if v.from > from || v.to <= from {
				continue
			}
			switch {
			case v.c.Stopped.IsZero():
				running = append(running, v.c.Live())
			case last == nil || v.c.Stopped.After(last.Stopped) || v.c.Stopped.Equal(last.Stopped) && v.c.ID < last.ID:
				last = &v.c
			}
		}
		var name containers.Name
		switch {
		case len(running) > 0:
			name = containers.DisplayName(running)
		case last != nil:
			name = containers.DisplayName([]containers.Container{last.Live()})
		default:
			continue
		}
		if len(out) > 0 && out[len(out)-1].to == from && out[len(out)-1].name == name {
			out[len(out)-1].to = to
			continue
		}
		out = append(out, segment{from, to, name})
	}
	return out
}

// FindNetns returns the namespaces a --container query names in the recording, matched as live
// (containers.Match: an ID, a container name, NAMESPACE/POD, a unique pod name, an ID prefix)
// against every container the recording saw. scope says what was recorded, for the message
// when nothing was.
func (h *History) FindNetns(q, scope string) ([]uint32, error) {
	latest := h.Containers()
	if len(latest) == 0 {
		return nil, fmt.Errorf("no container %q in this recording: it has no containers (recorded %s)", q, scope)
	}
	all := make([]containers.Container, 0, len(latest))
	byID := map[string]Container{}
	for _, c := range latest {
		byID[c.ID] = c
		lc := c.Live()
		lc.Up = true // every recorded name is a candidate, stopped or not
		all = append(all, lc)
	}
	sel, err := containers.Match(q, all)
	if err != nil {
		return nil, fmt.Errorf("in this recording: %w", err)
	}
	// A name given again to a new container (docker rm, then run --name) names both.
	name := ""
	if sel.ID != "" && byID[sel.ID].Name == strings.TrimPrefix(strings.TrimSpace(q), "/") {
		name = byID[sel.ID].Name
	}
	var out []uint32
	for _, v := range h.versions {
		c := v.c
		hit := sel.Matches(c.Live()) || name != "" && c.Name == name && c.K8sPod == ""
		if c.Netns != 0 && hit && !slices.Contains(out, c.Netns) {
			out = append(out, c.Netns)
		}
	}
	slices.Sort(out)
	return out, nil
}
