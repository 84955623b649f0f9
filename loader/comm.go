package loader

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
)

// MaxCommFilters is how many process names one program may select (COMM_FILTERS in bpf/comm.h).
const MaxCommFilters = 8

// setComms sets the --comm predicate of a program that includes bpf/comm.h: the processes whose
// name (their main thread's command name, as `ps -o comm` shows it) is one of comms. None: all.
func setComms(spec *ebpf.CollectionSpec, comms []string) error {
	if len(comms) > MaxCommFilters {
		return fmt.Errorf("at most %d process names", MaxCommFilters)
	}
	var names [MaxCommFilters][2]uint64
	for i, c := range comms {
		var b [16]byte
		copy(b[:15], c) // the kernel keeps 15 bytes and a NUL
		names[i] = [2]uint64{binary.NativeEndian.Uint64(b[:8]), binary.NativeEndian.Uint64(b[8:])}
	}
	for name, v := range map[string]any{"n_comms": uint32(len(comms)), "comm_names": names} {
		sv, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("the BPF object has no variable %s", name)
		}
		if err := sv.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// commKey is a process name as bpf/comm.h compares it.
func commKey(comm [16]byte) [16]byte {
	for i, c := range comm {
		if c == 0 {
			clear(comm[i:])
			break
		}
	}
	return comm
}
