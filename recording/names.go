package recording

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sockscope/sockscope/containers"
)

// Namer names network namespaces the way the live commands did when an event happened: the
// containers or pod running in the namespace then, or the last ones that ran in it.
type Namer struct {
	rec   *Recording
	cache map[int]map[uint32]containers.Name // per Containers sample
}

// Namer returns a namer over the recording's container history.
func (r *Recording) Namer() *Namer {
	return &Namer{rec: r, cache: map[int]map[uint32]containers.Name{}}
}

// Lookup returns the name of netns at time at; ok is false when no recorded container ever had
// it ("host" for the host namespace).
func (n *Namer) Lookup(netns uint32, at time.Time) (containers.Name, bool) {
	if netns == n.rec.Meta.HostNetns && netns != 0 {
		return containers.HostName, true
	}
	samples := n.rec.Containers
	if len(samples) == 0 {
		return containers.Name{}, false
	}
	// The sample in force at that time, then later ones (a container's block can trail its first events).
	i := sort.Search(len(samples), func(i int) bool { return samples[i].Time.After(at) }) - 1
	for j := max(i, 0); j < len(samples); j++ {
		if v, found := n.table(j)[netns]; found {
			return v, true
		}
	}
	for j := i - 1; j >= 0; j-- {
		if v, found := n.table(j)[netns]; found {
			return v, true
		}
	}
	return containers.Name{}, false
}

// table is one sample's names: running containers grouped by namespace, and for a namespace with
// none running, the container (or pod) that stopped last in it.
func (n *Namer) table(i int) map[uint32]containers.Name {
	if t, ok := n.cache[i]; ok {
		return t
	}
	running := map[uint32][]containers.Container{}
	stopped := map[uint32]Container{}
	for _, c := range n.rec.Containers[i].Value.List {
		if c.Netns == 0 || c.Netns == n.rec.Meta.HostNetns {
			continue
		}
		if c.Stopped.IsZero() {
			running[c.Netns] = append(running[c.Netns], c.Live())
		} else if s, ok := stopped[c.Netns]; !ok || c.Stopped.After(s.Stopped) {
			stopped[c.Netns] = c
		}
	}
	t := map[uint32]containers.Name{}
	for ns, c := range stopped {
		t[ns] = containers.DisplayName([]containers.Container{c.Live()})
	}
	for ns, cs := range running {
		t[ns] = containers.DisplayName(cs)
	}
	n.cache[i] = t
	return t
}

// FindNetns returns the namespaces a --container query names in the recording, matched as live
// (containers.Match: an ID, a container name, NAMESPACE/POD, a unique pod name, an ID prefix)
// against every container the recording saw.
func (r *Recording) FindNetns(q string) ([]uint32, error) {
	latest := map[string]Container{}
	var ids []string
	for _, s := range r.Containers {
		for _, c := range s.Value.List {
			if _, ok := latest[c.ID]; !ok {
				ids = append(ids, c.ID)
			}
			latest[c.ID] = c
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no container %q in this recording: it has no containers (recorded %s)", q, r.Meta.Scope)
	}
	all := make([]containers.Container, 0, len(ids))
	for _, id := range ids {
		c := latest[id].Live()
		c.Up = true // every recorded name is a candidate, stopped or not
		all = append(all, c)
	}
	sel, err := containers.Match(q, all)
	if err != nil {
		return nil, fmt.Errorf("in this recording: %w", err)
	}
	// A name given again to a new container (docker rm, then run --name) names both.
	name := ""
	if sel.ID != "" && latest[sel.ID].Name == strings.TrimPrefix(strings.TrimSpace(q), "/") {
		name = latest[sel.ID].Name
	}
	var out []uint32
	for _, s := range r.Containers {
		for _, c := range s.Value.List {
			hit := sel.Matches(c.Live()) || name != "" && c.Name == name && c.K8sPod == ""
			if c.Netns != 0 && hit && !slices.Contains(out, c.Netns) {
				out = append(out, c.Netns)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}
