package loader

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
)

// The namespace filter every program uses (bpf/netns.h), asked by the kernel itself through the
// selftest program netns_lookup, over a sequence of selections that goes through each of its
// paths: the few kept in the fixed element, more than fit there (the direct table), inodes that
// share their low bits (the overflow hash), inodes that leave, are promoted into the few, change
// their slot, and the limit. After each selection every inode of the test answers exactly its
// slot, or 0 when it is not selected.
func TestNamespaceFilterAnswersEachInodeItsSlot(t *testing.T) {
	requireRoot(t)
	if err := Memlock(); err != nil {
		t.Fatal(err)
	}
	const max = 12
	spec, err := loadSelftest()
	if err != nil {
		t.Fatal(err)
	}
	var specs selftestSpecs
	if err := spec.Assign(&specs); err != nil {
		t.Fatal(err)
	}
	if err := (NetnsSpecs{Direct: specs.NetnsDirect, Overflow: specs.NetnsOverflow, Mask: specs.NetnsMask, Filter: specs.FilterNetns}).Size(max, true); err != nil {
		t.Fatal(err)
	}
	var objs selftestObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Fatalf("load the selftest programs: %v", err)
	}
	defer objs.Close()
	table := NewNetnsTable(objs.NetnsDirect, objs.NetnsOverflow, objs.NetnsFew, max)
	if size := objs.NetnsDirect.MaxEntries(); size != 64 {
		t.Fatalf("direct table of %d entries, want 64 for %d namespaces", size, max)
	}

	// Inodes as the kernel numbers namespaces; x, x+64 and x+128 share the direct table's entry.
	const a = 4026531840
	n := func(i uint32) uint32 { return a + i }
	all := []uint32{n(1), n(2), n(3), n(4), n(5), n(6), n(7), n(8), n(9), n(10), n(11), n(12), n(13), n(65), n(129), n(193)}
	steps := []struct {
		name string
		want map[uint32]uint32
		more uint32 // the element's `more`: some selected inode only in the table
	}{
		{"nothing", map[uint32]uint32{}, 0},
		{"one", map[uint32]uint32{n(1): 1}, 0},
		{"as many as the few hold", map[uint32]uint32{n(1): 1, n(2): 2, n(3): 3, n(4): 4}, 0},
		{"one more than the few", map[uint32]uint32{n(1): 1, n(2): 2, n(3): 3, n(4): 4, n(5): 5}, 1},
		{"two leave, others share low bits", map[uint32]uint32{n(1): 1, n(3): 3, n(5): 5, n(65): 6, n(129): 7}, 1},
		{"slots change, one of the sharing leaves", map[uint32]uint32{n(1): 9, n(3): 3, n(5): 5, n(129): 8}, 0},
		{"the limit", map[uint32]uint32{n(1): 1, n(2): 2, n(3): 3, n(4): 4, n(5): 5, n(6): 6, n(7): 7, n(8): 8, n(9): 9, n(65): 10, n(129): 11, n(193): 12}, 1},
		{"the few leave, the table's are promoted", map[uint32]uint32{n(6): 6, n(65): 10, n(129): 11, n(193): 12}, 0},
		{"one left", map[uint32]uint32{n(193): 12}, 0},
		{"nothing again", map[uint32]uint32{}, 0},
	}
	for _, st := range steps {
		if err := table.Set(st.want); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		for _, ino := range all {
			got, err := objs.NetnsLookup.Run(&ebpf.RunOptions{Context: []uint64{uint64(ino)}})
			if err != nil {
				t.Fatalf("%s: run the lookup: %v", st.name, err)
			}
			if got != st.want[ino] {
				t.Errorf("%s: inode %d answers slot %d, want %d", st.name, ino, got, st.want[ino])
			}
		}
		var few netnsFew
		if err := objs.NetnsFew.Lookup(uint32(0), &few); err != nil {
			t.Fatal(err)
		}
		placed := 0
		for _, e := range few.E {
			if e.Inum != 0 {
				placed++
				if st.want[e.Inum] != e.Slot {
					t.Errorf("%s: the few hold inode %d with slot %d, want %d", st.name, e.Inum, e.Slot, st.want[e.Inum])
				}
			}
		}
		if wantPlaced := min(len(st.want), netnsFewSize); placed != wantPlaced || few.More != st.more {
			t.Errorf("%s: the few hold %d inodes, more=%d; want %d, more=%d (%s)", st.name, placed, few.More, wantPlaced, st.more, fmt.Sprint(few))
		}
	}
	if err := table.Set(map[uint32]uint32{n(1): 1, n(2): 2, n(3): 3, n(4): 4, n(5): 5, n(6): 6, n(7): 7, n(8): 8, n(9): 9, n(10): 10, n(11): 11, n(12): 12, n(13): 13}); err == nil {
		t.Error("13 namespaces were accepted over a limit of 12")
	}
}
