package loader

import (
	"testing"
	"unsafe"

	"github.com/sockscope/sockscope/events"
)

// events.Decode reads struct event by fixed offsets; bpf2go generates traceEvent from the same C
// declaration. A field moved in bpf/trace.h without updating the decoder fails here.
func TestEventLayoutMatchesDecoder(t *testing.T) {
	var e traceEvent
	if got := unsafe.Sizeof(e); got != events.RecordSize {
		t.Fatalf("struct event is %d bytes, events.RecordSize is %d", got, events.RecordSize)
	}
	for name, c := range map[string][2]uintptr{
		"ts_ns": {unsafe.Offsetof(e.TsNs), 0}, "prev_state_ns": {unsafe.Offsetof(e.PrevStateNs), 8},
		"latency_ns": {unsafe.Offsetof(e.LatencyNs), 16}, "netns": {unsafe.Offsetof(e.Netns), 24},
		"pid": {unsafe.Offsetof(e.Pid), 28}, "err": {unsafe.Offsetof(e.Err), 32},
		"sport": {unsafe.Offsetof(e.Sport), 36}, "dport": {unsafe.Offsetof(e.Dport), 38},
		"saddr": {unsafe.Offsetof(e.Saddr), 40}, "daddr": {unsafe.Offsetof(e.Daddr), 56},
		"comm": {unsafe.Offsetof(e.Comm), 72}, "family": {unsafe.Offsetof(e.Family), 88},
		"old_state": {unsafe.Offsetof(e.OldState), 89}, "new_state": {unsafe.Offsetof(e.NewState), 90},
		"kind": {unsafe.Offsetof(e.Kind), 91},
	} {
		if c[0] != c[1] {
			t.Errorf("field %s at offset %d, decoder reads it at %d", name, c[0], c[1])
		}
	}
}

func TestSocketRecordLayoutMatchesDecoder(t *testing.T) {
	var r socketsSockRecord
	var o socketsOwnerRecord
	if unsafe.Sizeof(r) != events.SocketRecordSize || unsafe.Sizeof(o) != events.OwnerRecordSize {
		t.Fatalf("sock_record %d bytes (decoder %d), owner_record %d (decoder %d)",
			unsafe.Sizeof(r), events.SocketRecordSize, unsafe.Sizeof(o), events.OwnerRecordSize)
	}
	for name, c := range map[string][2]uintptr{
		"inode": {unsafe.Offsetof(r.Inode), 0}, "uid": {unsafe.Offsetof(r.Uid), 4},
		"rx_queue": {unsafe.Offsetof(r.RxQueue), 8}, "tx_queue": {unsafe.Offsetof(r.TxQueue), 12},
		"sport": {unsafe.Offsetof(r.Sport), 16}, "dport": {unsafe.Offsetof(r.Dport), 18},
		"saddr": {unsafe.Offsetof(r.Saddr), 20}, "daddr": {unsafe.Offsetof(r.Daddr), 36},
		"family": {unsafe.Offsetof(r.Family), 52}, "state": {unsafe.Offsetof(r.State), 53},
		"timer": {unsafe.Offsetof(r.Timer), 54}, "retransmits": {unsafe.Offsetof(r.Retransmits), 55},
		"owner.pid": {unsafe.Offsetof(o.Pid), 4}, "owner.comm": {unsafe.Offsetof(o.Comm), 8},
	} {
		if c[0] != c[1] {
			t.Errorf("field %s at offset %d, decoder reads it at %d", name, c[0], c[1])
		}
	}
}
