package sockets

import (
	"testing"
	"unsafe"

	esockets "github.com/sockscope/sockscope/events/sockets"
)

func TestSocketRecordLayoutMatchesDecoder(t *testing.T) {
	var r socketsSockRecord
	var o socketsOwnerRecord
	if unsafe.Sizeof(r) != esockets.SocketRecordSize || recordedOwnerSize != esockets.OwnerRecordSize || unsafe.Offsetof(o.Sk) != recordedOwnerSize {
		t.Fatalf("sock_record %d bytes (decoder %d), owner_record's recorded part %d (decoder %d)",
			unsafe.Sizeof(r), esockets.SocketRecordSize, recordedOwnerSize, esockets.OwnerRecordSize)
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
