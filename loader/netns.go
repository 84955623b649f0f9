package loader

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/cilium/ebpf"
)

// netnsShared marks a direct-table entry whose low bits more than one selected inode shares: the
// overflow hash has those (bpf/netns.h).
const netnsShared = 0xffffffff

// netnsDirectSize is the direct table's size for up to max namespaces at once: a power of two,
// at least twice max, so that inodes rarely share an entry.
func netnsDirectSize(max uint32) uint32 {
	n := uint32(64)
	if max > 32 {
		n = 1 << bits.Len32(2*max-1)
	}
	return n
}

// NetnsTable mirrors a program set's namespace filter: the selected inodes and their slots, in
// the direct table and its overflow hash, and the first few of them in the fixed element checked
// before the table, so that an update writes only what changed.
type NetnsTable struct {
	direct, overflow, few *ebpf.Map
	mask                  uint32
	max                   int
	slots                 map[uint32]uint32 // selected inode -> slot
	entries               map[uint32]netnsEntry
	inOverflow            map[uint32]bool
	fewNow                netnsFew
}

type netnsEntry struct{ Inum, Slot uint32 }

// netnsFewSize is NETNS_FEW in bpf/netns.h.
const netnsFewSize = 4

// netnsFew is struct netns_few: places for the first few selected inodes, and whether some
// selected inode is only in the direct table.
type netnsFew struct {
	E    [netnsFewSize]netnsEntry
	More uint32
	Pad  uint32
}

// NewNetnsTable is the filter of a loaded program set: its maps netns_direct, netns_overflow and
// netns_few, for up to max namespaces at once.
func NewNetnsTable(direct, overflow, few *ebpf.Map, max uint32) *NetnsTable {
	return &NetnsTable{
		direct: direct, overflow: overflow, few: few, mask: direct.MaxEntries() - 1, max: int(max),
		slots: map[uint32]uint32{}, entries: map[uint32]netnsEntry{}, inOverflow: map[uint32]bool{},
	}
}

// Set makes the filter select exactly the inodes of want, each with its slot (nonzero). A lookup
// that runs meanwhile sees the old or the new selection of each inode, never another's slot.
func (t *NetnsTable) Set(want map[uint32]uint32) error {
	if len(want) > t.max {
		return fmt.Errorf("%d network namespaces to select, the limit is %d", len(want), t.max)
	}
	groups := map[uint32][]uint32{}
	for ino := range want {
		groups[ino&t.mask] = append(groups[ino&t.mask], ino)
	}
	entries := make(map[uint32]netnsEntry, len(groups))
	overflow := map[uint32]bool{}
	for idx, inos := range groups {
		if len(inos) == 1 {
			entries[idx] = netnsEntry{inos[0], want[inos[0]]}
			continue
		}
		entries[idx] = netnsEntry{0, netnsShared}
		for _, ino := range inos {
			overflow[ino] = true
		}
	}
	// Inodes that leave the selection leave the overflow first, so that a swap at exact capacity
	// never finds it full. Overflow entries go in before the markers that send lookups there, and
	// inodes that stay selected leave the overflow only after their own entry replaced the marker.
	for ino := range t.inOverflow {
		if _, ok := want[ino]; !ok {
			if err := t.overflow.Delete(ino); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("remove netns %d from the filter: %w", ino, err)
			}
			delete(t.inOverflow, ino)
		}
	}
	for ino := range overflow {
		if t.inOverflow[ino] && t.slots[ino] == want[ino] {
			continue
		}
		if err := t.overflow.Put(ino, want[ino]); err != nil {
			return fmt.Errorf("add netns %d to the filter: %w", ino, err)
		}
		t.inOverflow[ino] = true
	}
	for idx := range t.entries {
		if _, ok := entries[idx]; !ok {
			if err := t.direct.Put(idx, netnsEntry{}); err != nil {
				return fmt.Errorf("remove from the netns filter: %w", err)
			}
			delete(t.entries, idx)
		}
	}
	for idx, e := range entries {
		if t.entries[idx] == e {
			continue
		}
		if err := t.direct.Put(idx, e); err != nil {
			return fmt.Errorf("add to the netns filter: %w", err)
		}
		t.entries[idx] = e
	}
	for ino := range t.inOverflow {
		if !overflow[ino] {
			if err := t.overflow.Delete(ino); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("remove netns %d from the filter: %w", ino, err)
			}
			delete(t.inOverflow, ino)
		}
	}
	if err := t.setFew(want); err != nil {
		return err
	}
	t.slots = make(map[uint32]uint32, len(want))
	for ino, s := range want {
		t.slots[ino] = s
	}
	return nil
}

// setFew brings the fixed element to want, after the table has it (a lookup that misses the
// few goes to the table while `more` is set). An inode keeps its place while it stays selected,
// so the element goes through states in which every inode that stays is found: places of inodes
// that leave are emptied first (a slot that changes is written in place: a lookup sees the old
// or the new one), then free places take inodes in order, and `more` is cleared last; it is
// never clear while a selected inode is only in the table.
func (t *NetnsTable) setFew(want map[uint32]uint32) error {
	placed := map[uint32]bool{}
	emptied := t.fewNow
	for i, e := range emptied.E {
		if e.Inum == 0 {
			continue
		}
		if s, ok := want[e.Inum]; ok {
			emptied.E[i].Slot = s
			placed[e.Inum] = true
		} else {
			emptied.E[i] = netnsEntry{}
		}
	}
	var rest []uint32
	for ino := range want {
		if !placed[ino] {
			rest = append(rest, ino)
		}
	}
	slices.Sort(rest)
	filled := emptied
	for i := range filled.E {
		if filled.E[i].Inum == 0 && len(rest) > 0 {
			filled.E[i] = netnsEntry{rest[0], want[rest[0]]}
			rest = rest[1:]
		}
	}
	final := filled
	final.More = 0
	if len(rest) > 0 {
		final.More = 1
	}
	emptied.More = t.fewNow.More | final.More
	filled.More = emptied.More
	for _, next := range []netnsFew{emptied, filled, final} {
		if next == t.fewNow {
			continue
		}
		if err := t.few.Put(uint32(0), next); err != nil {
			return fmt.Errorf("update the netns filter: %w", err)
		}
		t.fewNow = next
	}
	return nil
}

// SelectAll is set for filters that need no slots: every inode gets slot 1. It reports whether
// an inode was added.
func (t *NetnsTable) SelectAll(inodes []uint32) (added bool, err error) {
	want := make(map[uint32]uint32, len(inodes))
	for _, ino := range inodes {
		want[ino] = 1
		if _, ok := t.slots[ino]; !ok {
			added = true
		}
	}
	return added, t.Set(want)
}

// Keys lists the keys of a map. Reading only keys works for per-CPU maps too and copies no
// values.
func Keys[K any](m *ebpf.Map) ([]K, error) {
	var out []K
	var next K
	var prev any // nil: from the first key
	for {
		err := m.NextKey(prev, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("list %s: %w", m, err)
		}
		out = append(out, next)
		prev = next
	}
}

// DeleteKeys deletes the keys of m for which drop is true. The keys are listed first and deleted
// after: deleting while walking a hash can restart the walk.
func DeleteKeys[K any](m *ebpf.Map, drop func(K) bool) error {
	all, err := Keys[K](m)
	if err != nil {
		return err
	}
	for _, k := range all {
		if !drop(k) {
			continue
		}
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete from %s: %w", m, err)
		}
	}
	return nil
}
