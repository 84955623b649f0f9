package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

// The floor variants: programs that do nothing on the hooks sockscope's modes use, loaded by the
// harness itself. Every mode's ratio is read against them, measured in the same rounds.
var floorDefs = []struct {
	key   string // -floors name
	mode  string // round mode
	label string
	hooks []string
}{
	{"state", modeFloorState, "one empty `tp_btf` program on `inet_sock_set_state`", []string{benchkit.HookState}},
	{"state2", modeFloorState2, "two empty `tp_btf` programs on `inet_sock_set_state`", []string{benchkit.HookState, benchkit.HookState}},
	{"connect", modeFloorConnect, "one empty classic `syscalls:sys_enter_connect` program (every syscall of the machine on the slow path)", []string{benchkit.HookConnectEnter}},
	{"sysexit", modeFloorSysExit, "one empty `tp_btf` program on `sys_exit` (the syscall counters' hook)", []string{benchkit.HookSysExit}},
	{"writer", modeFloorWriter, "the least a writer of every transition does: one clock read and one 16-byte ring-buffer record per transition, drained every 10 ms", []string{benchkit.HookStateWriter}},
}

// modeFloor is the floor the targets are judged against: one empty program on the hook every
// TCP mode needs.
const modeFloor = modeFloorState

func floorNames() string {
	var n []string
	for _, f := range floorDefs {
		n = append(n, f.key)
	}
	return strings.Join(n, ", ")
}

func parseFloors(list string) ([]string, error) {
	if list == "none" || list == "" {
		return nil, nil
	}
	var modes []string
	for _, k := range strings.Split(list, ",") {
		found := false
		for _, f := range floorDefs {
			if f.key == k {
				modes, found = append(modes, f.mode), true
			}
		}
		if !found {
			return nil, fmt.Errorf("-floors: unknown variant %q (want %s, or none)", k, floorNames())
		}
	}
	return modes, nil
}

func isFloor(mode string) bool { return strings.HasPrefix(mode, "floor") }

// floorLabel describes a floor mode; "" for other modes.
func floorLabel(mode string) string {
	for _, f := range floorDefs {
		if f.mode == mode {
			return f.label
		}
	}
	return ""
}

// modeDef is one mode of a round.
type modeDef struct {
	key string
	bin string // sockscope binary, for trace and record modes
}

// modes lists what each round runs: the baseline, the floors, trace, the recording modes, and
// trace with each -compare binary.
func (b *bench) modes(recModes []string) []modeDef {
	out := []modeDef{{key: modeBaseline}}
	floors, _ := parseFloors(b.cfg.floors)
	for _, f := range floors {
		out = append(out, modeDef{key: f})
	}
	out = append(out, modeDef{key: modeSockscope, bin: b.cfg.sockscope})
	for _, m := range recModes {
		out = append(out, modeDef{key: m, bin: b.cfg.sockscope})
	}
	for _, c := range b.cfg.compare {
		out = append(out, modeDef{key: compareMode(c[0]), bin: c[1]})
	}
	return out
}

// compareMode is the round mode of trace with the -compare binary NAME.
func compareMode(name string) string { return modeSockscope + "@" + name }

func isTrace(mode string) bool {
	return mode == modeSockscope || strings.HasPrefix(mode, modeSockscope+"@")
}

// runMode runs one storm in mode m.
func (b *bench) runMode(m modeDef, r *round) error {
	switch {
	case m.key == modeBaseline:
		var err error
		r.Storm, err = b.storm()
		return err
	case isFloor(m.key):
		return b.floorRound(r)
	case isTrace(m.key):
		return b.tracedRound(r, m.bin, false)
	case isRecord(m.key):
		return b.recordRound(r, false)
	}
	return fmt.Errorf("unknown mode %q", m.key)
}

// floorRound runs the storm with the floor programs of r.Mode attached by the harness itself.
func (b *bench) floorRound(r *round) error {
	var hooks []string
	for _, f := range floorDefs {
		if f.mode == r.Mode {
			hooks = f.hooks
		}
	}
	start := time.Now()
	fl, err := benchkit.AttachFloor(hooks...)
	if err != nil {
		return err
	}
	r.AttachMS = benchkit.Millis(time.Since(start))
	r.Storm, err = b.storm()
	fl.Close()
	r.FloorRecords = int64(fl.Records)
	return err
}

// logTail is the end of a round's progress line: what the tracer did.
func (r *round) logTail() string {
	switch {
	case isTrace(r.Mode):
		return fmt.Sprintf(", sockscope %.2f µs CPU/conn, %d state lines for %d connections, attached in %.0f ms", r.cpuPerConn(), r.StateLines, r.Storm.Total, r.AttachMS)
	case isRecord(r.Mode):
		ev := "no summary line"
		if r.Rec != nil {
			ev = fmt.Sprintf("%d events (%d expected)", r.Rec.Events, expectedRecords(r.Storm.Total))
		}
		return fmt.Sprintf(", sockscope %.2f µs CPU/conn, %s, %d bytes, attached in %.0f ms", r.cpuPerConn(), ev, r.File.Bytes, r.AttachMS)
	case r.Mode == modeFloorWriter:
		return fmt.Sprintf(", %d records (%d expected)", r.FloorRecords, expectedRecords(r.Storm.Total))
	}
	return ""
}

// tracePath is where a traced round's JSON goes.
func (b *bench) tracePath(r *round) string {
	return filepath.Join(b.tmp, fmt.Sprintf("sockscope-%d-%s.jsonl", r.Pair, strings.ReplaceAll(r.Mode, "@", "-")))
}
