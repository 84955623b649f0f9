package loader

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Reasons of the kernel side's per-CPU lost counters (bpf/lost.h).
const (
	lostRingFull = iota
	lostHandshakes
	lostRareFull
	lostSyscallCounts
	lostSyscallBudget
	lostSyscallErrors
	lostSyscallPaths
	lostOwnedFull
	nLost
)

// readLost sums a program set's lost counters (bpf/lost.h) over the CPUs.
func readLost(m *ebpf.Map) ([nLost]uint64, error) {
	var out [nLost]uint64
	var per []uint64
	for i := range out {
		if err := m.Lookup(uint32(i), &per); err != nil {
			return out, fmt.Errorf("read lost counters: %w", err)
		}
		for _, v := range per {
			out[i] += v
		}
	}
	return out, nil
}

// recursionMisses sums the runs the kernel skipped because a program was already running on
// that CPU (an interrupt nested in it): each is an event lost.
func recursionMisses(progs ...*ebpf.Program) (uint64, error) {
	var n uint64
	for _, p := range progs {
		st, err := p.Stats()
		if err != nil {
			return 0, fmt.Errorf("read program statistics: %w", err)
		}
		n += st.RecursionMisses
	}
	return n, nil
}
