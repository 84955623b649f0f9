package containers

import (
	"slices"
	"strings"
	"sync/atomic"
)

// Names is a live table from network namespace inode to the containers in it. Lookup is a single
// atomic load and a map read, safe from any number of goroutines while the Watcher replaces the
// table; a table is never modified once published.
type Names struct {
	t atomic.Pointer[nameTable]
}

type nameTable struct {
	host uint32
	m    map[uint32]nsName
}

type nsName struct {
	name string // container names joined by ",", sorted
	id   string // their short IDs joined by ",", in the same order
}

func newNames(host uint32) *Names {
	n := &Names{}
	n.t.Store(&nameTable{host: host, m: map[uint32]nsName{}})
	return n
}

// Lookup returns the display name and ID for a netns: "host" (id "") for the host netns; for
// containers sharing one netns (--network container:x, pods) the names joined by "," sorted and
// their short IDs joined by "," in the same order; ok=false when the inode is unknown.
func (n *Names) Lookup(inode uint32) (name, id string, ok bool) {
	if n == nil {
		return "", "", false
	}
	t := n.t.Load()
	if t == nil {
		return "", "", false
	}
	if inode == t.host && inode != 0 {
		return "host", "", true
	}
	e, ok := t.m[inode]
	return e.name, e.id, ok
}

// Len returns the number of network namespaces the table names, the host's not counted.
func (n *Names) Len() int {
	if t := n.t.Load(); t != nil {
		return len(t.m)
	}
	return 0
}

// nameOf joins the names and short IDs of containers sharing one netns.
// DisplayName is how sockscope names a network namespace holding the containers cs: their names
// joined by "," (sorted), and their short IDs in the same order.
func DisplayName(cs []Container) (name, id string) {
	n := nameOf(cs)
	return n.name, n.id
}

func nameOf(cs []Container) nsName {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b Container) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	names := make([]string, len(cs))
	ids := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
		if names[i] == "" {
			names[i] = c.ShortID()
		}
		ids[i] = c.ShortID()
	}
	return nsName{name: strings.Join(names, ","), id: strings.Join(ids, ",")}
}
