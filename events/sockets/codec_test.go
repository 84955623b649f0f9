package sockets

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/sockscope/sockscope/events"
)

func sockRecord(inode uint32, state uint8, family uint8, saddr netip.Addr, sport uint16, daddr netip.Addr, dport uint16) []byte {
	b := make([]byte, SocketRecordSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], inode)
	le.PutUint32(b[4:], 1000)
	le.PutUint32(b[8:], 7)
	le.PutUint32(b[12:], 9)
	le.PutUint16(b[16:], sport)
	le.PutUint16(b[18:], dport)
	copy(b[20:36], saddr.AsSlice())
	copy(b[36:52], daddr.AsSlice())
	b[52], b[53], b[54], b[55] = family, state, 1, 2
	return b
}

func ownerRecord(inode, pid uint32, comm string) []byte {
	b := make([]byte, OwnerRecordSize)
	binary.LittleEndian.PutUint32(b[0:], inode)
	binary.LittleEndian.PutUint32(b[4:], pid)
	copy(b[8:], comm)
	return b
}

func TestDecodeSocketsNamesOwnersByInode(t *testing.T) {
	lo, up := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	raw := append(sockRecord(11, 10, 2, lo, 8080, netip.IPv4Unspecified(), 0), sockRecord(0, 6, 10, netip.IPv6Loopback(), 40000, netip.IPv6Loopback(), 3306)...)
	raw = append(raw, sockRecord(12, 1, 2, lo, 40001, up, 3306)...)
	owners, err := DecodeOwners(append(append(ownerRecord(11, 42, "nginx"), ownerRecord(11, 43, "worker")...), ownerRecord(12, 7, "app")...))
	if err != nil {
		t.Fatal(err)
	}
	socks, err := DecodeSockets(raw, 99, owners)
	if err != nil {
		t.Fatal(err)
	}
	want := []Socket{
		{Netns: 99, State: events.StateListen, Family: 2, Saddr: lo, Sport: 8080, Daddr: netip.IPv4Unspecified(), RxQueue: 7, TxQueue: 9, Timer: 1, Retransmits: 2, UID: 1000, Inode: 11, Pid: 42, Comm: "nginx"},
		{Netns: 99, State: events.StateTimeWait, Family: 10, Saddr: netip.IPv6Loopback(), Sport: 40000, Daddr: netip.IPv6Loopback(), Dport: 3306, RxQueue: 7, TxQueue: 9, Timer: 1, Retransmits: 2, UID: 1000},
		{Netns: 99, State: events.StateEstablished, Family: 2, Saddr: lo, Sport: 40001, Daddr: up, Dport: 3306, RxQueue: 7, TxQueue: 9, Timer: 1, Retransmits: 2, UID: 1000, Inode: 12, Pid: 7, Comm: "app"},
	}
	if len(socks) != len(want) {
		t.Fatalf("%d sockets, want %d", len(socks), len(want))
	}
	for i := range want {
		if socks[i] != want[i] {
			t.Errorf("socket %d:\n got %+v\nwant %+v", i, socks[i], want[i])
		}
		// The encoders are the decoders' inverse, byte for byte against the kernel's layout.
		if enc := EncodeSocket(&socks[i]); !bytes.Equal(enc, raw[i*SocketRecordSize:(i+1)*SocketRecordSize]) {
			t.Errorf("EncodeSocket %d:\n got %x\nwant %x", i, enc, raw[i*SocketRecordSize:(i+1)*SocketRecordSize])
		}
	}
	if enc, want := EncodeOwner(12, Owner{Pid: 7, Comm: "app"}), ownerRecord(12, 7, "app"); !bytes.Equal(enc, want) {
		t.Errorf("EncodeOwner:\n got %x\nwant %x", enc, want)
	}
	if _, err := DecodeSockets(raw[:SocketRecordSize+1], 1, nil); err == nil {
		t.Error("a truncated snapshot decoded without error")
	}
	if _, err := DecodeOwners(make([]byte, OwnerRecordSize-1)); err == nil {
		t.Error("a truncated owner snapshot decoded without error")
	}
}

// The arithmetic behind "Cannot assign requested address": ports of the ephemeral range held
// per remote endpoint, in any state but LISTEN, counted once per port.
func TestSummarizeCountsEphemeralPortsPerRemoteEndpoint(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	up := events.Endpoint{Addr: lo, Port: 8080}
	db := events.Endpoint{Addr: lo, Port: 3306}
	var socks []Socket
	add := func(st events.State, sport uint16, to events.Endpoint) {
		socks = append(socks, Socket{State: st, Saddr: lo, Sport: sport, Daddr: to.Addr, Dport: to.Port})
	}
	for p := uint16(40000); p < 40006; p++ {
		add(events.StateTimeWait, p, up) // 6 ports to the upstream in TIME_WAIT
	}
	add(events.StateEstablished, 40010, up)
	add(events.StateEstablished, 40000, db) // the same local port to another endpoint: its own tuple
	add(events.StateEstablished, 50000, db) // outside the range: not ephemeral
	add(events.StateListen, 40020, events.Endpoint{Addr: netip.IPv4Unspecified(), Port: 0})
	s := Summarize(socks, [2]int{40000, 40099}, 0, 1)
	if s.Total != 10 || s.ByState[events.StateTimeWait] != 6 || s.ByState[events.StateEstablished] != 3 || s.ByState[events.StateListen] != 1 {
		t.Errorf("counts: %+v", s)
	}
	if len(s.TimeWait) != 1 || s.TimeWait[0] != (events.EndpointCount{Endpoint: up, Count: 6}) {
		t.Errorf("TIME_WAIT by endpoint: %+v", s.TimeWait)
	}
	if len(s.Established) != 1 || s.Established[0] != (events.EndpointCount{Endpoint: db, Count: 2}) {
		t.Errorf("ESTABLISHED by endpoint (top 1): %+v", s.Established)
	}
	if len(s.PortUse) != 1 || s.PortUse[0] != (PortUse{up, 7, 100}) {
		t.Errorf("port use (top 1): %+v, want 7 of 100 to %v", s.PortUse, up)
	}
}
