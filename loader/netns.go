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
