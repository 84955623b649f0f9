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
	LostListenersFull
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

// SkippedNotRescued is how many transitions a state program and its twin (bpf/nested.h) lost
// between them: the main program's recursion misses less those its twin took over (the per-CPU
// rescued counts in the nested map). The twin's own misses are not losses: the kernel skips the
// twin only where the main program ran for the transition.
func SkippedNotRescued(main *ebpf.Program, nested *ebpf.Map) (uint64, error) {
	misses, err := RecursionMisses(main)
	if err != nil {
		return 0, err
	}
	var per []nestedState
	if err := nested.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("read the nested-run counts: %w", err)
	}
	var rescued uint64
	for _, v := range per {
		rescued += v.Rescued
	}
	if misses < rescued {
		return 0, nil
	}
	return misses - rescued, nil
}

// nestedState is struct nested_state (bpf/nested.h): one CPU's stack of the transitions its state
// programs run for. bpf2go generates it from the selftest object, which includes nested.h.
type nestedState = selftestNestedState

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
