package loader

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Reasons of the kernel side's per-CPU lost counters (bpf/lost.h).
const (
	LostRingFull = iota
	LostHandshakes
	LostRareFull
	LostSyscallCounts
	LostSyscallBudget
	LostSyscallErrors
	LostSyscallPaths
	LostOwnedFull
	NLost
)

// ReadLost sums a program set's lost counters (bpf/lost.h) over the CPUs.
func ReadLost(m *ebpf.Map) ([NLost]uint64, error) {
	var out [NLost]uint64
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

// RecursionMisses sums the runs the kernel skipped because a program was already running on
// that CPU (an interrupt nested in it): each is an event lost.
func RecursionMisses(progs ...*ebpf.Program) (uint64, error) {
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

// OwnerRecordSize is the size of struct owner_record (bpf/owner.h): the owner walks of trace and
// sockets write it.
const OwnerRecordSize = 40
