package trace

import "testing"

// The owner predicates (--pid, --comm) hold together: a record must match both, and --comm any
// of its names, compared with the process name as the kernel keeps it (NUL-padded).
func TestFilterKeepsOwnersByPidAndName(t *testing.T) {
	ev := func(pid uint32, comm string) *Event {
		e := &Event{Kind: KindState, Pid: pid}
		copy(e.Comm[:], comm)
		return e
	}
	for _, tc := range []struct {
		f    Filter
		e    *Event
		keep bool
	}{
		{Filter{}, ev(1, "nginx"), true},
		{Filter{Comms: []string{"nginx"}}, ev(1, "nginx"), true},
		{Filter{Comms: []string{"nginx"}}, ev(1, "nginx-worker"), false},
		{Filter{Comms: []string{"nginx"}}, ev(1, "ngin"), false},
		{Filter{Comms: []string{"postgres", "nginx"}}, ev(1, "nginx"), true},
		{Filter{Comms: []string{"nginx"}}, ev(0, ""), false}, // owner unknown
		{Filter{Pid: 7, Comms: []string{"nginx"}}, ev(7, "nginx"), true},
		{Filter{Pid: 7, Comms: []string{"nginx"}}, ev(8, "nginx"), false},
		{Filter{Pid: 7, Comms: []string{"nginx"}}, ev(7, "curl"), false},
		{Filter{Comms: []string{"a-15-byte-name!"}}, ev(1, "a-15-byte-name!"), true},
	} {
		if got := tc.f.Keep(tc.e); got != tc.keep {
			t.Errorf("%+v keeps pid %d comm %q: %v, want %v", tc.f, tc.e.Pid, tc.e.CommString(), got, tc.keep)
		}
	}
}

// The owner-name predicate runs on every record of a trace with --comm: it must not allocate.
func TestFilterByNameDoesNotAllocate(t *testing.T) {
	f := Filter{Comms: []string{"postgres", "nginx"}}
	e := &Event{Kind: KindState, Pid: 1}
	copy(e.Comm[:], "nginx")
	if n := testing.AllocsPerRun(100, func() { f.Keep(e) }); n != 0 {
		t.Errorf("Keep with --comm allocates %v times per record", n)
	}
}
