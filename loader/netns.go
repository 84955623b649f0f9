package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// netnsSet mirrors a kernel netns_filter map (inode -> 1), so that updates touch only what changed.
type netnsSet map[uint32]bool

// set makes the map hold exactly inodes and reports whether any inode was added.
func (s *netnsSet) set(m *ebpf.Map, inodes []uint32) (added bool, err error) {
	want := make(netnsSet, len(inodes))
	for _, ino := range inodes {
		want[ino] = true
		if !(*s)[ino] {
			if err := m.Put(ino, uint8(1)); err != nil {
				return added, fmt.Errorf("add netns %d to the filter: %w", ino, err)
			}
			added = true
		}
	}
	for ino := range *s {
		if !want[ino] {
			if err := m.Delete(ino); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return added, fmt.Errorf("remove netns %d from the filter: %w", ino, err)
			}
		}
	}
	*s = want
	return added, nil
}

// keys lists the keys of a map. Reading only keys works for per-CPU maps too and copies no
// values.
func keys[K any](m *ebpf.Map) ([]K, error) {
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

// deleteKeys deletes the keys of m for which drop is true. The keys are listed first and deleted
// after: deleting while walking a hash can restart the walk.
func deleteKeys[K any](m *ebpf.Map, drop func(K) bool) error {
	all, err := keys[K](m)
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
