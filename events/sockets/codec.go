package sockets

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/sockscope/sockscope/events"
	"golang.org/x/sys/unix"
)

// Socket is one TCP socket from a socket-table snapshot (bpf/sockets.h, struct sock_record).
type Socket struct {
	Netns       uint32
	State       events.State
	Family      uint8
	Saddr       netip.Addr
	Sport       uint16
	Daddr       netip.Addr
	Dport       uint16
	RxQueue     uint32
	TxQueue     uint32
	Timer       uint8
	Retransmits uint8
	UID         uint32
	Inode       uint32
	Pid         uint32 // owner, 0 when unknown (time-wait and request sockets have none)
	Comm        string
}

// SocketRecordSize and OwnerRecordSize are the sizes of the C records.
const (
	SocketRecordSize = 56
	OwnerRecordSize  = 24
)

// Owner is the process holding a socket's file.
type Owner struct {
	Pid  uint32
	Comm string
}

// DecodeSockets decodes a snapshot of sock_records taken in netns, naming owners by inode.
func DecodeSockets(b []byte, netns uint32, owners map[uint32]Owner) ([]Socket, error) {
	if len(b)%SocketRecordSize != 0 {
		return nil, fmt.Errorf("socket snapshot of %d bytes is not a whole number of %d-byte records", len(b), SocketRecordSize)
	}
	le := binary.LittleEndian
	out := make([]Socket, 0, len(b)/SocketRecordSize)
	for ; len(b) > 0; b = b[SocketRecordSize:] {
		s := Socket{
			Netns:       netns,
			Inode:       le.Uint32(b[0:]),
			UID:         le.Uint32(b[4:]),
			RxQueue:     le.Uint32(b[8:]),
			TxQueue:     le.Uint32(b[12:]),
			Sport:       le.Uint16(b[16:]),
			Dport:       le.Uint16(b[18:]),
			Family:      b[52],
			State:       events.State(b[53]),
			Timer:       b[54],
			Retransmits: b[55],
		}
		if s.Family == unix.AF_INET6 {
			s.Saddr = netip.AddrFrom16([16]byte(b[20:36]))
			s.Daddr = netip.AddrFrom16([16]byte(b[36:52]))
		} else {
			s.Saddr = netip.AddrFrom4([4]byte(b[20:24]))
			s.Daddr = netip.AddrFrom4([4]byte(b[36:40]))
		}
		if o, ok := owners[s.Inode]; ok && s.Inode != 0 {
			s.Pid, s.Comm = o.Pid, o.Comm
		}
		out = append(out, s)
	}
	return out, nil
}

// DecodeOwners decodes owner_records into inode -> owner. A socket shared by several processes
// (inherited across fork) keeps the first, lowest-PID-first as the kernel walks tasks.
func DecodeOwners(b []byte) (map[uint32]Owner, error) {
	if len(b)%OwnerRecordSize != 0 {
		return nil, fmt.Errorf("owner snapshot of %d bytes is not a whole number of %d-byte records", len(b), OwnerRecordSize)
	}
	m := make(map[uint32]Owner, len(b)/OwnerRecordSize)
	for ; len(b) > 0; b = b[OwnerRecordSize:] {
		ino := binary.LittleEndian.Uint32(b[0:])
		if _, ok := m[ino]; ok {
			continue
		}
		comm := b[8:24]
		n := 0
		for n < len(comm) && comm[n] != 0 {
			n++
		}
		m[ino] = Owner{Pid: binary.LittleEndian.Uint32(b[4:]), Comm: string(comm[:n])}
	}
	return m, nil
}

// PortUse is how much of the ephemeral port range the sockets to one remote endpoint hold: a
// (local address, local port, remote address, remote port) tuple is unique, so with one
// destination the range is the limit, and connect() fails with EADDRNOTAVAIL when it is used up.
type PortUse struct {
	Endpoint events.Endpoint
	Used     int // local ports in the ephemeral range held by sockets to events.Endpoint, any state
	Range    int // size of the range
}

// Summary is one network namespace at a glance.
type Summary struct {
	Total       int
	ByState     map[events.State]int
	TimeWait    []events.EndpointCount // remote endpoints of TIME_WAIT sockets, most first
	Established []events.EndpointCount
	PortRange   [2]int
	TWReuse     int
	PortUse     []PortUse // most used first
}

// Summarize counts sockets by state and by remote endpoint, keeping the top n endpoints.
func Summarize(socks []Socket, portRange [2]int, twReuse, n int) Summary {
	s := Summary{Total: len(socks), ByState: map[events.State]int{}, PortRange: portRange, TWReuse: twReuse}
	tw, est := map[events.Endpoint]int{}, map[events.Endpoint]int{}
	type portKey struct {
		ep   events.Endpoint
		port uint16
	}
	used := map[portKey]bool{}
	for _, k := range socks {
		s.ByState[k.State]++
		ep := events.Endpoint{Addr: k.Daddr, Port: k.Dport}
		switch k.State {
		case events.StateTimeWait:
			tw[ep]++
		case events.StateEstablished:
			est[ep]++
		}
		if k.State != events.StateListen && int(k.Sport) >= portRange[0] && int(k.Sport) <= portRange[1] {
			used[portKey{ep, k.Sport}] = true
		}
	}
	s.TimeWait = topEndpoints(tw, n)
	s.Established = topEndpoints(est, n)
	perEP := map[events.Endpoint]int{}
	for k := range used {
		perEP[k.ep]++
	}
	size := portRange[1] - portRange[0] + 1
	for _, ec := range topEndpoints(perEP, n) {
		s.PortUse = append(s.PortUse, PortUse{Endpoint: ec.Endpoint, Used: ec.Count, Range: size})
	}
	return s
}

func topEndpoints(m map[events.Endpoint]int, n int) []events.EndpointCount {
	out := make([]events.EndpointCount, 0, len(m))
	for ep, c := range m {
		out = append(out, events.EndpointCount{Endpoint: ep, Count: c})
	}
	slices.SortFunc(out, func(a, b events.EndpointCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		if c := a.Endpoint.Addr.Compare(b.Endpoint.Addr); c != 0 {
			return c
		}
		return cmp.Compare(a.Endpoint.Port, b.Endpoint.Port)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// States the summary lists, in the order ss uses.
var summaryStates = []events.State{events.StateEstablished, events.StateSynSent, events.StateSynRecv, events.StateFinWait1, events.StateFinWait2,
	events.StateTimeWait, events.StateClose, events.StateCloseWait, events.StateLastAck, events.StateListen, events.StateClosing}

// AppendSocketJSON appends one JSON line for a socket.
func AppendSocketJSON(b []byte, k *Socket, n events.Name) []byte {
	b = append(b, '{')
	b = events.AppendNameJSON(b, n)
	b = append(b, `,"netns":`...)
	b = strconv.AppendUint(b, uint64(k.Netns), 10)
	b = append(b, `,"state":"`...)
	b = append(b, k.State.String()...)
	b = append(b, `","family":"`...)
	if k.Family == unix.AF_INET6 {
		b = append(b, "ipv6"...)
	} else {
		b = append(b, "ipv4"...)
	}
	b = append(b, `","saddr":"`...)
	b = k.Saddr.AppendTo(b)
	b = append(b, `","sport":`...)
	b = strconv.AppendUint(b, uint64(k.Sport), 10)
	b = append(b, `,"daddr":"`...)
	b = k.Daddr.AppendTo(b)
	b = append(b, `","dport":`...)
	b = strconv.AppendUint(b, uint64(k.Dport), 10)
	for _, f := range []struct {
		key string
		v   uint64
	}{{"rx_queue", uint64(k.RxQueue)}, {"tx_queue", uint64(k.TxQueue)}, {"timer", uint64(k.Timer)},
		{"retransmits", uint64(k.Retransmits)}, {"uid", uint64(k.UID)}, {"inode", uint64(k.Inode)}, {"pid", uint64(k.Pid)}} {
		b = append(b, ',', '"')
		b = append(b, f.key...)
		b = append(b, '"', ':')
		b = strconv.AppendUint(b, f.v, 10)
	}
	b = append(b, `,"comm":`...)
	b = events.AppendJSONString(b, k.Comm)
	return append(b, "}\n"...)
}

// AppendSocketHeader and AppendSocketRow write a table like `ss -tanp`, with the container; names
// are shown events.Printable.
func AppendSocketHeader(b []byte) []byte {
	return fmt.Appendf(b, "%-16s %-11s %6s %6s %-45s %-45s %s\n", "CONTAINER", "STATE", "RECV-Q", "SEND-Q", "LOCAL", "PEER", "PROCESS")
}

func AppendSocketRow(b []byte, k *Socket, container string) []byte {
	proc := ""
	if k.Pid != 0 {
		proc = events.Printable(k.Comm) + "/" + strconv.FormatUint(uint64(k.Pid), 10)
	}
	var l, r [64]byte
	return fmt.Appendf(b, "%-16s %-11s %6d %6d %-45s %-45s %s\n", events.Printable(container), k.State, k.RxQueue, k.TxQueue,
		events.AppendHostPort(l[:0], k.Saddr, k.Sport), events.AppendHostPort(r[:0], k.Daddr, k.Dport), proc)
}

// AppendSummary writes a summary in plain text, for one namespace named container.
func AppendSummary(b []byte, s *Summary, container string, netns uint32) []byte {
	b = fmt.Appendf(b, "%s (netns %d): %d TCP sockets\n", events.Printable(container), netns, s.Total)
	b = append(b, "  states:"...)
	for _, st := range summaryStates {
		if n := s.ByState[st]; n > 0 {
			b = fmt.Appendf(b, " %s %d", st, n)
		}
	}
	b = append(b, '\n')
	b = fmt.Appendf(b, "  net.ipv4.ip_local_port_range %d-%d (%d ports), net.ipv4.tcp_tw_reuse %d\n",
		s.PortRange[0], s.PortRange[1], s.PortRange[1]-s.PortRange[0]+1, s.TWReuse)
	for _, part := range []struct {
		title string
		eps   []events.EndpointCount
	}{{"TIME_WAIT by remote endpoint", s.TimeWait}, {"ESTABLISHED by remote endpoint", s.Established}} {
		if len(part.eps) == 0 {
			continue
		}
		b = fmt.Appendf(b, "  %s:\n", part.title)
		for _, ec := range part.eps {
			b = fmt.Appendf(b, "    %-45s %d\n", ec.Endpoint, ec.Count)
		}
	}
	if len(s.PortUse) > 0 {
		b = append(b, "  ephemeral ports in use, by remote endpoint (connect() fails with EADDRNOTAVAIL at 100%):\n"...)
		for _, u := range s.PortUse {
			b = fmt.Appendf(b, "    %-45s %d of %d (%.1f%%)\n", u.Endpoint, u.Used, u.Range, 100*float64(u.Used)/float64(max(u.Range, 1)))
		}
	}
	return b
}

// SocketInode is the inode of a raw socket record (0 for time-wait and request sockets).
func SocketInode(rec []byte) uint32 { return binary.LittleEndian.Uint32(rec[0:]) }

// OwnerInode is the socket inode of a raw owner record.
func OwnerInode(rec []byte) uint32 { return binary.LittleEndian.Uint32(rec[0:]) }

// EncodeSocket lays s out as the iterator writes struct sock_record (bpf/sockets.h): the
// inverse of DecodeSockets (the owner goes in an owner record, see EncodeOwner).
func EncodeSocket(s *Socket) []byte {
	b := make([]byte, SocketRecordSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], s.Inode)
	le.PutUint32(b[4:], s.UID)
	le.PutUint32(b[8:], s.RxQueue)
	le.PutUint32(b[12:], s.TxQueue)
	le.PutUint16(b[16:], s.Sport)
	le.PutUint16(b[18:], s.Dport)
	copy(b[20:36], s.Saddr.AsSlice())
	copy(b[36:52], s.Daddr.AsSlice())
	b[52], b[53], b[54], b[55] = s.Family, byte(s.State), s.Timer, s.Retransmits
	return b
}

// EncodeOwner lays out an owner record (bpf/sockets.h): the inverse of DecodeOwners.
func EncodeOwner(inode uint32, o Owner) []byte {
	b := make([]byte, OwnerRecordSize)
	binary.LittleEndian.PutUint32(b[0:], inode)
	binary.LittleEndian.PutUint32(b[4:], o.Pid)
	copy(b[8:24], o.Comm)
	return b
}
