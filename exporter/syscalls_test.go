package exporter

import (
	"maps"
	"testing"
)

// The top K per container: the hottest keys of the first scrape get series; they keep them; the
// rest add up in other; every series only grows from scrape to scrape.
func TestBoundKeepsMembershipAndOtherOnlyGrows(t *testing.T) {
	members := map[scKey]bool{}
	scrapes := []map[scKey]uint64{
		{k(1): 100, k(2): 50, k(3): 10},
		{k(1): 100, k(2): 60, k(3): 10, k(4): 5000}, // a new hot call joins other: the series are taken
		{k(1): 120, k(2): 60, k(3): 30, k(4): 9000, k(5): 1},
	}
	want := []struct {
		named map[scKey]uint64
		other uint64
	}{
		{map[scKey]uint64{k(1): 100, k(2): 50}, 10},
		{map[scKey]uint64{k(1): 100, k(2): 60}, 5010},
		{map[scKey]uint64{k(1): 120, k(2): 60}, 9031},
	}
	for i, counts := range scrapes {
		named, other := bound(members, counts, 2)
		if !maps.Equal(named, want[i].named) || other != want[i].other {
			t.Errorf("scrape %d: named %v other %d, want %v %d", i, named, other, want[i].named, want[i].other)
		}
	}
	// Room left: a later key joins while there is room.
	members = map[scKey]bool{}
	bound(members, map[scKey]uint64{k(7): 1}, 2)
	named, other := bound(members, map[scKey]uint64{k(7): 1, k(8): 3, k(9): 2}, 2)
	if !maps.Equal(named, map[scKey]uint64{k(7): 1, k(8): 3}) || other != 2 {
		t.Errorf("joining: named %v other %d", named, other)
	}
	// Ties go in key order, so the exposition is the same for the same counts.
	members = map[scKey]bool{}
	named, _ = bound(members, map[scKey]uint64{k(5): 1, k(3): 1, k(4): 1}, 2)
	if !maps.Equal(named, map[scKey]uint64{k(3): 1, k(4): 1}) {
		t.Errorf("ties: %v", named)
	}
}

func k(nr uint32) scKey { return scKey{nr: nr} }
