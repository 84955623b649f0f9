package containers

import "sync/atomic"

// Names is a live table from network namespace inode to its name. Lookup is a single atomic load
// and a map read, safe from any number of goroutines while the Watcher replaces the table; a
// table is never modified once published.
type Names struct {
	t atomic.Pointer[nameTable]
}

type nameTable struct {
	host uint32
	m    map[uint32]Name
}

// NewNames returns a table that names only the host's namespace until a Watcher fills it.
func NewNames(host uint32) *Names {
	n := &Names{}
	n.t.Store(&nameTable{host: host, m: map[uint32]Name{}})
	return n
}

// Namer names network namespaces: Names, a watcher's names, or a recording's at one moment.
type Namer interface {
	Lookup(inode uint32) (Name, bool)
}

// Lookup returns the name of a netns: "host" for the host's, a pod's NAMESPACE/POD, or the
// containers in it; ok=false when the inode is unknown.
func (n *Names) Lookup(inode uint32) (Name, bool) {
	if n == nil {
		return Name{}, false
	}
	t := n.t.Load()
	if t == nil {
		return Name{}, false
	}
	if inode == t.host && inode != 0 {
		return HostName, true
	}
	e, ok := t.m[inode]
	return e, ok
}

// Len returns the number of network namespaces the table names, the host's not counted.
func (n *Names) Len() int {
	if t := n.t.Load(); t != nil {
		return len(t.m)
	}
	return 0
}
