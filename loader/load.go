package loader

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
)

// The typed load step every program set shares. bpf2go generates a struct of specs per object
// (traceSpecs, syscallsSpecs, ...); a loader assigns its object's specs once, sizes maps and sets
// constants through their fields, and so can neither misspell a name nor meet a missing one
// later than the Assign.

// assignSpecs fills a generated specs struct from an object's spec; what names the object.
func assignSpecs(spec *ebpf.CollectionSpec, specs any, what string) error {
	if err := spec.Assign(specs); err != nil {
		return fmt.Errorf("the %s BPF object does not match its loader (rebuild it with make generate): %w", what, err)
	}
	return nil
}

// constant is one of a program set's `const volatile` settings and the value to give it.
type constant struct {
	v     *ebpf.VariableSpec
	value any
}

// setConstants sets constants before load; an error names the one that failed.
func setConstants(cs ...constant) error {
	for _, c := range cs {
		if err := c.v.Set(c.value); err != nil {
			return fmt.Errorf("set %s: %w", c.v.Name, err)
		}
	}
	return nil
}

// netnsSpecs is a program set's namespace filter (bpf/netns.h).
type netnsSpecs struct {
	direct, overflow *ebpf.MapSpec
	mask, filter     *ebpf.VariableSpec
}

// size sizes the filter for max namespaces selected at once, and sets whether it applies.
func (n netnsSpecs) size(max uint32, filter bool) error {
	size := netnsDirectSize(max)
	n.direct.MaxEntries = size
	n.overflow.MaxEntries = max
	return setConstants(constant{n.mask, size - 1}, constant{n.filter, filter})
}

// MaxCommFilters is how many process names one program may select (COMM_FILTERS in bpf/comm.h).
const MaxCommFilters = 8

// commSpecs is a program set's --comm predicate (bpf/comm.h).
type commSpecs struct {
	count, names *ebpf.VariableSpec
}

// set selects the processes whose name (their main thread's command name, as `ps -o comm`
// shows it) is one of comms; none selects all.
func (c commSpecs) set(comms []string) error {
	if len(comms) > MaxCommFilters {
		return fmt.Errorf("at most %d process names", MaxCommFilters)
	}
	var names [MaxCommFilters][2]uint64
	for i, name := range comms {
		var b [16]byte
		copy(b[:15], name) // the kernel keeps 15 bytes and a NUL
		names[i] = [2]uint64{binary.NativeEndian.Uint64(b[:8]), binary.NativeEndian.Uint64(b[8:])}
	}
	return setConstants(constant{c.count, uint32(len(comms))}, constant{c.names, names})
}

// commKey is a process name as bpf/comm.h compares it: NUL-padded after its end.
func commKey(comm [16]byte) [16]byte {
	for i, c := range comm {
		if c == 0 {
			clear(comm[i:])
			break
		}
	}
	return comm
}
