package trace

import (
	"slices"

	"github.com/sockscope/sockscope/events"
)

// Filter is trace's selection applied to recorded events, in the order and with the meaning
// the kernel applies it live (bpf/trace.bpf.c), so a replay prints what a live trace with the
// same flags would have printed.
type Filter struct {
	Netns             map[uint32]bool // nil: every namespace
	Ports             []uint16        // local or remote port
	Family            uint8           // 2 (AF_INET) or 10 (AF_INET6); 0: both
	Pid               uint32          // owner's tgid
	Comms             []string        // owner's process name, one of these
	State             events.State    // transitions from or to this state
	ConnectErrorsOnly bool
}

// Keep reports whether e passes; it may narrow e.Kind as the kernel does (a transition that
// concluded a failed connect is only a connect under ConnectErrorsOnly, only a connect when its
// states do not match events.State).
func (f *Filter) Keep(e *Event) bool {
	if f.Family != 0 && e.Family != f.Family {
		return false
	}
	if f.Netns != nil && !f.Netns[e.Netns] {
		return false
	}
	if len(f.Ports) > 0 && !slices.Contains(f.Ports, e.Sport) && !slices.Contains(f.Ports, e.Dport) {
		return false
	}
	if f.ConnectErrorsOnly {
		if e.Kind&KindConnect == 0 || e.Errno == 0 {
			return false
		}
		e.Kind = KindConnect
	}
	if f.State != 0 && e.OldState != f.State && e.NewState != f.State {
		e.Kind &^= KindState
	}
	if e.Kind == 0 {
		return false
	}
	if f.Pid != 0 && e.Pid != f.Pid {
		return false
	}
	return len(f.Comms) == 0 || f.commKept(e)
}

// commKept tells whether e's owner has one of the names in Comms. It runs for every record of a
// trace with --comm, so it compares the kernel's bytes in place rather than making a string.
func (f *Filter) commKept(e *Event) bool {
	n := 0
	for n < len(e.Comm) && e.Comm[n] != 0 {
		n++
	}
	for _, c := range f.Comms {
		if c == string(e.Comm[:n]) { // no allocation: the conversion is only compared
			return true
		}
	}
	return false
}
