package loader

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
)

// The typed load step every program set shares. bpf2go generates a struct of specs per object
// (traceSpecs in loader/trace, syscallsSpecs in loader/syscalls, ...); a capability's loader
// assigns its object's specs once, sizes maps and sets constants through their fields, and so can
// neither misspell a name nor meet a missing one later than the Assign.

// AssignSpecs fills a generated specs struct from an object's spec; what names the object.
func AssignSpecs(spec *ebpf.CollectionSpec, specs any, what string) error {
	if err := spec.Assign(specs); err != nil {
		return fmt.Errorf("the %s BPF object does not match its loader (rebuild it with make generate): %w", what, err)
	}
	return nil
}

// Constant is one of a program set's `const volatile` settings and the value to give it.
type Constant struct {
	V     *ebpf.VariableSpec
	Value any
}

// Const is a Constant: v set to value.
func Const(v *ebpf.VariableSpec, value any) Constant { return Constant{V: v, Value: value} }

// SetConstants sets constants before load; an error names the one that failed.
func SetConstants(cs ...Constant) error {
	for _, c := range cs {
		if err := c.V.Set(c.Value); err != nil {
			return fmt.Errorf("set %s: %w", c.V.Name, err)
		}
	}
	return nil
}

// NetnsSpecs is a program set's namespace filter (bpf/netns.h), from its generated specs.
type NetnsSpecs struct {
	Direct, Overflow *ebpf.MapSpec
	Mask, Filter     *ebpf.VariableSpec
}

// Size sizes the filter for max namespaces selected at once, and sets whether it applies.
func (n NetnsSpecs) Size(max uint32, filter bool) error {
	size := netnsDirectSize(max)
	n.Direct.MaxEntries = size
	n.Overflow.MaxEntries = max
	return SetConstants(Const(n.Mask, size-1), Const(n.Filter, filter))
}

// MaxCommFilters is how many process names one program may select (COMM_FILTERS in bpf/comm.h).
const MaxCommFilters = 8

// CommSpecs is a program set's --comm predicate (bpf/comm.h), from its generated specs.
type CommSpecs struct {
	Count, Names *ebpf.VariableSpec
}

// Set selects the processes whose name (their main thread's command name, as `ps -o comm`
// shows it) is one of comms; none selects all.
func (c CommSpecs) Set(comms []string) error {
	if len(comms) > MaxCommFilters {
		return fmt.Errorf("at most %d process names", MaxCommFilters)
	}
	var names [MaxCommFilters][2]uint64
	for i, name := range comms {
		var b [16]byte
		copy(b[:15], name) // the kernel keeps 15 bytes and a NUL
		names[i] = [2]uint64{binary.NativeEndian.Uint64(b[:8]), binary.NativeEndian.Uint64(b[8:])}
	}
	return SetConstants(Const(c.Count, uint32(len(comms))), Const(c.Names, names))
}

// CommKey is a process name as bpf/comm.h compares it: NUL-padded after its end.
func CommKey(comm [16]byte) [16]byte {
	for i, c := range comm {
		if c == 0 {
			clear(comm[i:])
			break
		}
	}
	return comm
}
