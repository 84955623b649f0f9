package trace

import (
	"testing"
	"unsafe"

	etrace "github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/loader"
)

// etrace.Tracker reads the kernel's records by fixed offsets; bpf2go generates these types from
// the same C declarations. A field moved in bpf/trace.h without updating the tracker fails here.
func TestEventLayoutMatchesTracker(t *testing.T) {
	var e traceEvent
	var v4 traceEventV4
	var v6 traceEventV6
	if unsafe.Sizeof(e) != etrace.KernelHeadSize || unsafe.Offsetof(v4.Comm) != etrace.KernelV4Size || unsafe.Offsetof(v6.Comm) != etrace.KernelV6Size {
		t.Fatalf("head %d (tracker %d), v4 comm at %d (tracker %d), v6 comm at %d (tracker %d)", unsafe.Sizeof(e), etrace.KernelHeadSize,
			unsafe.Offsetof(v4.Comm), etrace.KernelV4Size, unsafe.Offsetof(v6.Comm), etrace.KernelV6Size)
	}
	for name, c := range map[string][2]uintptr{
		"ts_ns": {unsafe.Offsetof(e.TsNs), 0}, "sk": {unsafe.Offsetof(e.Sk), 8}, "netns": {unsafe.Offsetof(e.Netns), 16},
		"pid": {unsafe.Offsetof(e.Pid), 20}, "sport": {unsafe.Offsetof(e.Sport), 24}, "dport": {unsafe.Offsetof(e.Dport), 26},
		"family": {unsafe.Offsetof(e.Family), 28}, "old_state": {unsafe.Offsetof(e.OldState), 29},
		"new_state": {unsafe.Offsetof(e.NewState), 30}, "kind": {unsafe.Offsetof(e.Kind), 31},
		"err": {unsafe.Offsetof(e.Err), 32}, "latency_us": {unsafe.Offsetof(e.LatencyUs), 36},
		"v4 saddr": {unsafe.Offsetof(v4.Saddr), 40}, "v4 daddr": {unsafe.Offsetof(v4.Daddr), 44},
		"v6 saddr": {unsafe.Offsetof(v6.Saddr), 40}, "v6 daddr": {unsafe.Offsetof(v6.Daddr), 56},
	} {
		if c[0] != c[1] {
			t.Errorf("field %s at offset %d, the tracker reads it at %d", name, c[0], c[1])
		}
	}
	var o traceOwnerRecord
	if unsafe.Sizeof(o) != loader.OwnerRecordSize || unsafe.Offsetof(o.Sk) != 24 || unsafe.Offsetof(o.Netns) != 32 || unsafe.Offsetof(o.Sport) != 36 || unsafe.Offsetof(o.State) != 38 {
		t.Errorf("owner_record: %d bytes, sk at %d, netns at %d, sport at %d, state at %d", unsafe.Sizeof(o), unsafe.Offsetof(o.Sk), unsafe.Offsetof(o.Netns), unsafe.Offsetof(o.Sport), unsafe.Offsetof(o.State))
	}
}
