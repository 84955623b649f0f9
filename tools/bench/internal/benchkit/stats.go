package benchkit

import (
	"errors"
	"io"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Time inside BPF programs, from the kernel's own statistics (BPF_ENABLE_STATS): where a step
// of a few nanoseconds drowns in the spread of whole-call timing (a VM whose every syscall
// switches page tables, for one), the time the programs themselves run still shows it. The
// statistics cost two clock reads per run while enabled, the same for every mode of a run.

// EnableStats turns the kernel's run-time statistics on until the returned Closer is closed.
func EnableStats() (io.Closer, error) {
	return ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
}

// ProgRun is one program's statistics at one moment.
type ProgRun struct {
	Name    string
	Runtime time.Duration
	Runs    uint64
}

// ProgramRuns reads the statistics of every BPF program loaded on the machine, by ID.
func ProgramRuns() (map[ebpf.ProgramID]ProgRun, error) {
	runs := map[ebpf.ProgramID]ProgRun{}
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, unix.ENOENT) {
			return runs, nil
		}
		if err != nil {
			return nil, err
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if errors.Is(err, unix.ENOENT) {
			continue // unloaded in between
		}
		if err != nil {
			return nil, err
		}
		info, err := p.Info()
		var st *ebpf.ProgramStats
		if err == nil {
			st, err = p.Stats()
		}
		p.Close()
		if err != nil {
			return nil, err
		}
		runs[id] = ProgRun{Name: info.Name, Runtime: st.Runtime, Runs: st.RunCount}
	}
}

// InProgram is the time per run of the programs that ran at least min times between two
// snapshots of ProgramRuns, summed over them (a call that passes a sys_enter and a sys_exit
// program pays both), and their names; 0 when none did.
func InProgram(before, after map[ebpf.ProgramID]ProgRun, min uint64) (ns float64, names []string) {
	for id, a := range after {
		b, ok := before[id]
		if !ok || a.Runs-b.Runs < min {
			continue
		}
		ns += float64(a.Runtime-b.Runtime) / float64(a.Runs-b.Runs)
		names = append(names, a.Name)
	}
	return ns, names
}
