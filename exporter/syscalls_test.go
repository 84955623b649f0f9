package exporter

import (
	"maps"
	"testing"
)

// The top K per container: the hottest keys of the first scrape get series; they keep them; the
// rest add up in other; every series only grows from scrape to scrape.
func TestBoundKeepsMembershipAndOtherOnlyGrows(t *testing.T) {
	members := map[uint32]bool{}
	scrapes := []map[uint32]uint64{
		{1: 100, 2: 50, 3: 10},
		{1: 100, 2: 60, 3: 10, 4: 5000}, // a new hot call joins other: the series are taken
		{1: 120, 2: 60, 3: 30, 4: 9000, 5: 1},
	}
	want := []struct {
		named map[uint32]uint64
		other uint64
	}{
		{map[uint32]uint64{1: 100, 2: 50}, 10},
		{map[uint32]uint64{1: 100, 2: 60}, 5010},
		{map[uint32]uint64{1: 120, 2: 60}, 9031},
	}
	for i, counts := range scrapes {
		named, other := bound(members, counts, 2)
		if !maps.Equal(named, want[i].named) || other != want[i].other {
			t.Errorf("scrape %d: named %v other %d, want %v %d", i, named, other, want[i].named, want[i].other)
		}
	}
	// Room left: a later key joins while there is room.
	members = map[uint32]bool{}
	bound(members, map[uint32]uint64{7: 1}, 2)
	named, other := bound(members, map[uint32]uint64{7: 1, 8: 3, 9: 2}, 2)
	if !maps.Equal(named, map[uint32]uint64{7: 1, 8: 3}) || other != 2 {
		t.Errorf("joining: named %v other %d", named, other)
	}
	// Ties go in key order, so the exposition is the same for the same counts.
	members = map[uint32]bool{}
	named, _ = bound(members, map[uint32]uint64{5: 1, 3: 1, 4: 1}, 2)
	if !maps.Equal(named, map[uint32]uint64{3: 1, 4: 1}) {
		t.Errorf("ties: %v", named)
	}
}
