package exporter

import (
	"slices"
	"strings"
	"testing"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/loader/syscalls"
)

func ns(ino uint32, name string, fixed bool) Namespace {
	n := Namespace{Inode: ino, Name: containers.Name{Name: name}, Fixed: fixed}
	if !fixed {
		n.Containers = []containers.Container{{ID: name + "-id", Name: name, Netns: ino}}
	}
	return n
}

// plan applies a set as SetNamespaces would, without a kernel: it returns the counted names in
// priority order and how many wait.
func plan(c *Collector, nss ...Namespace) ([]string, int) {
	counted, inodes, waiting := c.planLocked(nss)
	c.ns = counted
	var names []string
	for _, ino := range inodes {
		names = append(names, counted[ino].Name.Name)
	}
	return names, waiting
}

// More namespaces than the maps hold: the host and --netns first, then the earliest seen; the
// others wait and are counted as soon as one leaves, never the set frozen.
func TestCountedNamespacesFollowTheirOrderOfArrival(t *testing.T) {
	c := New(Kernel{MaxNetns: 2}, "test", false)
	host, a, b, d := ns(1, "host", true), ns(10, "a", false), ns(11, "b", false), ns(12, "d", false)
	steps := []struct {
		set     []Namespace
		counted []string
		waiting int
	}{
		{[]Namespace{a, host}, []string{"host", "a"}, 0},
		{[]Namespace{d, b, a, host}, []string{"host", "a"}, 2}, // b and d wait
		{[]Namespace{b, d, host}, []string{"host", "d"}, 1},    // a left: d was seen before b
		{[]Namespace{b, d, host, ns(13, "e", false)}, []string{"host", "d"}, 2},
		{[]Namespace{b, host, ns(13, "e", false)}, []string{"host", "b"}, 1},
		{[]Namespace{ns(20, "blue", true), b, host}, []string{"blue", "host"}, 1}, // fixed ones first, in their turn
	}
	for i, s := range steps {
		got, waiting := plan(c, s.set...)
		slices.Sort(got)
		want := slices.Sorted(slices.Values(s.counted))
		if !slices.Equal(got, want) || waiting != s.waiting {
			t.Errorf("step %d: counted %v, %d waiting; want %v, %d", i, got, waiting, want, s.waiting)
		}
	}
}

// Names are unique among counted namespaces: a container named host gets the inode in its name,
// the host keeps "host"; a name keeps its series while its namespace is counted.
func TestDisplayNamesAreUnique(t *testing.T) {
	var warned []string
	c := New(Kernel{}, "test", false)
	c.Warn = func(s string) { warned = append(warned, s) }
	names, _ := plan(c, ns(300, "host", false), ns(1, "host", true), ns(301, "web", false))
	if want := []string{"host", "host (netns 300)", "web"}; !slices.Equal(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], `container="host (netns 300)"`) {
		t.Errorf("warnings %q", warned)
	}
	// Two runtimes, one name: the first seen keeps it; when it leaves, the other keeps its own
	// (its series stay what they were).
	names, _ = plan(c, ns(1, "host", true), ns(301, "web", false), ns(302, "web", false))
	if want := []string{"host", "web", "web (netns 302)"}; !slices.Equal(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
	names, _ = plan(c, ns(1, "host", true), ns(302, "web", false))
	if want := []string{"host", "web (netns 302)"}; !slices.Equal(names, want) {
		t.Errorf("after the first left: %v, want %v", names, want)
	}
	// A renamed container (docker rename) is named anew.
	names, _ = plan(c, ns(1, "host", true), ns(302, "api", false))
	if want := []string{"host", "api"}; !slices.Equal(names, want) {
		t.Errorf("renamed: %v, want %v", names, want)
	}
}

// The kernel counts a namespace's calls past its budget of rows under syscalls.Other: they
// belong to syscall="other", never to a series of their own named "other" too, even when they are
// the biggest count.
func TestKernelOtherRowAddsUpInOther(t *testing.T) {
	members := map[scKey]bool{}
	counts := map[scKey]uint64{{nr: syscalls.Other}: 1000, {nr: 0}: 7, {nr: 1}: 5, {nr: 2}: 3}
	named, other := bound(members, counts, 2)
	if len(named) != 2 || named[scKey{nr: 0}] != 7 || named[scKey{nr: 1}] != 5 || other != 1003 {
		t.Errorf("named %v, other %d; want nr 0 (7) and 1 (5) named, other 1003", named, other)
	}
	if members[scKey{nr: syscalls.Other}] {
		t.Error("the kernel's other row became a member")
	}
}
