package recording

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sockscope/sockscope/containers"
)

// Namer names network namespaces the way the live commands did when an event happened: the
// containers running in the namespace then, or the last ones that ran in it.
type Namer struct {
	rec   *Recording
	cache map[int]map[uint32][2]string // per Containers sample
}

// Namer returns a namer over the recording's container history.
func (r *Recording) Namer() *Namer { return &Namer{rec: r, cache: map[int]map[uint32][2]string{}} }

// Lookup returns the display name and short ID(s) of netns at time at; ok is false when no
// recorded container ever had it ("host" for the host namespace).
func (n *Namer) Lookup(netns uint32, at time.Time) (name, id string, ok bool) {
	if netns == n.rec.Meta.HostNetns && netns != 0 {
		return "host", "", true
	}
	samples := n.rec.Containers
	if len(samples) == 0 {
		return "", "", false
	}
	// The sample in force at that time, then later ones (a container's block can trail its first events).
	i := sort.Search(len(samples), func(i int) bool { return samples[i].Time.After(at) }) - 1
	for j := max(i, 0); j < len(samples); j++ {
		if v, found := n.table(j)[netns]; found {
			return v[0], v[1], true
		}
	}
	for j := i - 1; j >= 0; j-- {
		if v, found := n.table(j)[netns]; found {
			return v[0], v[1], true
		}
	}
	return "", "", false
}

// table is one sample's names: running containers grouped by namespace, and for a namespace with
// none running, the container that stopped last in it.
func (n *Namer) table(i int) map[uint32][2]string {
	if t, ok := n.cache[i]; ok {
		return t
	}
	running := map[uint32][]containers.Container{}
	stopped := map[uint32]Container{}
	for _, c := range n.rec.Containers[i].Value.List {
		if c.Netns == 0 {
			continue
		}
		if c.Stopped.IsZero() {
			running[c.Netns] = append(running[c.Netns], containers.Container{ID: c.ID, Name: c.Name})
		} else if s, ok := stopped[c.Netns]; !ok || c.Stopped.After(s.Stopped) {
			stopped[c.Netns] = c
		}
	}
	t := map[uint32][2]string{}
	for ns, c := range stopped {
		name := c.Name
		if name == "" {
			name = c.ShortID()
		}
		t[ns] = [2]string{name, c.ShortID()}
	}
	for ns, cs := range running {
		name, id := containers.DisplayName(cs)
		t[ns] = [2]string{name, id}
	}
	n.cache[i] = t
	return t
}

// FindContainers returns the recorded containers a query names: an exact name, else an ID prefix.
func (r *Recording) FindContainers(q string) ([]Container, error) {
	latest := map[string]Container{}
	var names []string
	for _, s := range r.Containers {
		for _, c := range s.Value.List {
			if _, ok := latest[c.ID]; !ok {
				names = append(names, c.Name)
			}
			latest[c.ID] = c
		}
	}
	var byName, byID []Container
	for _, c := range latest {
		if c.Name == q {
			byName = append(byName, c)
		} else if len(q) >= 1 && strings.HasPrefix(c.ID, q) {
			byID = append(byID, c)
		}
	}
	byNameID := func(a, b Container) int { return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID)) }
	if len(byName) > 0 {
		slices.SortFunc(byName, byNameID)
		return byName, nil
	}
	if len(byID) > 0 {
		slices.SortFunc(byID, byNameID)
		return byID, nil
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no container %q in this recording: it has no containers (recorded %s)", q, r.Meta.Scope)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("no container %q in this recording; closest: %s", q, strings.Join(containers.Closest(q, names, 3), ", "))
}
