package trace

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/events"
)

// The kernel's records (struct event_v4 and event_v6 in bpf/trace.h): a 40-byte head, the
// addresses, and the owner's command name only where the kernel ran in the owner's context.
const (
	KernelHeadSize = 40
	KernelV4Size   = KernelHeadSize + 8  // without the command name
	KernelV6Size   = KernelHeadSize + 32 // without the command name
	kernelCommSize = 16

	kindOwner = 4 // pid and comm are the owner's: the kernel ran in its context
	kindCall  = 8 // a connect outcome from the syscall's return (--connect-syscall)
)

// Tracker turns the kernel's records into Events. The kernel side keeps no memory per socket
// (socket storage would cost every transition more than its record does), so the tracker keeps
// each socket's life, by the socket's address, from the records: its owner (taken where the
// kernel runs in the owner's context, inherited by an accepted socket from its listener), and the
// time of its last transition, which gives the time spent in a state and, for the transition out
// of SYN_SENT, the connect latency (bpf/connect.h). A socket's life ends with its transition to
// CLOSE; the next life at the same address starts with a transition from CLOSE or from LISTEN.
//
// It must see every record of the sockets it reports on, in order: the kernel filters only by
// namespace, family and port, which do not change during a life; the state, owner and
// connect-error filters apply after it (Filter).
type Tracker struct {
	socks     map[uint64]*life
	listeners map[portKey]map[uint64]*life
	deferred  map[uint64]deferred
}

// life is what the tracker knows of one socket.
type life struct {
	pid    uint32
	comm   [16]byte
	lastTs uint64 // 0: the socket was first seen mid-life
	listen portKey
	addr   netip.Addr // a listener's bound address (unspecified for any)
}

type portKey struct {
	netns uint32
	port  uint16
}

// deferred is a connect that failed inside connect() with --connect-syscall: its transition to
// CLOSE came first, its errno comes with the syscall's return.
type deferred struct {
	latency time.Duration
	pid     uint32
	comm    [16]byte
	saddr   netip.Addr
	sport   uint16
}

// NewTracker returns a tracker that knows no socket yet.
func NewTracker() *Tracker {
	return &Tracker{socks: map[uint64]*life{}, listeners: map[portKey]map[uint64]*life{}, deferred: map[uint64]deferred{}}
}

// Seed tells the tracker who owns a socket that existed before its first record (the owner
// walk). A socket whose owner the records already named keeps it. A listener's port is kept too,
// so that the sockets it accepts inherit its owner.
func (t *Tracker) Seed(sk uint64, netns uint32, pid uint32, comm [16]byte, state events.State, port uint16) {
	l := t.socks[sk]
	if l == nil {
		l = &life{}
		t.socks[sk] = l
	}
	if l.pid == 0 {
		l.pid, l.comm = pid, comm
	}
	if state == events.StateListen && l.listen == (portKey{}) {
		t.addListener(sk, l, portKey{netns, port}, netip.Addr{})
	}
}

func (t *Tracker) addListener(sk uint64, l *life, k portKey, addr netip.Addr) {
	l.listen, l.addr = k, addr
	m := t.listeners[k]
	if m == nil {
		m = map[uint64]*life{}
		t.listeners[k] = m
	}
	m[sk] = l
}

func (t *Tracker) dropListener(sk uint64, l *life) {
	if l.listen == (portKey{}) {
		return
	}
	if m := t.listeners[l.listen]; m != nil {
		delete(m, sk)
		if len(m) == 0 {
			delete(t.listeners, l.listen)
		}
	}
	l.listen = portKey{}
}

// listenerOf finds the listener that a socket accepted on netns, addr:port came from: one bound
// to that address, else one bound to any. SO_REUSEPORT listeners of different processes share a
// port; the child then inherits one of them, and gets its own owner when it is closed.
func (t *Tracker) listenerOf(netns uint32, addr netip.Addr, port uint16) *life {
	var any *life
	for _, l := range t.listeners[portKey{netns, port}] {
		if l.addr.IsValid() && !l.addr.IsUnspecified() {
			if l.addr == addr || l.addr == addr.Unmap() {
				return l
			}
			continue
		}
		if any == nil || (any.pid == 0 && l.pid != 0) {
			any = l
		}
	}
	return any
}

// Len is how many sockets the tracker keeps.
func (t *Tracker) Len() int { return len(t.socks) }

// Event decodes one kernel record into e, with the owner, the time in the previous state and the
// connect latency filled in from the socket's life. It reports false for a record too short to
// be one.
func (t *Tracker) Event(b []byte, e *Event) bool {
	if len(b) < KernelV4Size {
		return false
	}
	le := binary.LittleEndian
	sk := le.Uint64(b[8:])
	*e = Event{
		Mono:     le.Uint64(b[0:]),
		Netns:    le.Uint32(b[16:]),
		Sport:    le.Uint16(b[24:]),
		Dport:    le.Uint16(b[26:]),
		Family:   b[28],
		OldState: events.State(b[29]),
		NewState: events.State(b[30]),
		Kind:     Kind(b[31]) & (KindState | KindConnect),
		Errno:    syscall.Errno(int32(le.Uint32(b[32:]))),
	}
	kind := b[31]
	pid := le.Uint32(b[20:])
	var comm [16]byte
	commAt := KernelV4Size
	if e.Family == afInet6 {
		if len(b) < KernelV6Size {
			return false
		}
		e.Saddr = netip.AddrFrom16([16]byte(b[40:56]))
		e.Daddr = netip.AddrFrom16([16]byte(b[56:72]))
		commAt = KernelV6Size
	} else {
		e.Saddr = netip.AddrFrom4([4]byte(b[40:44]))
		e.Daddr = netip.AddrFrom4([4]byte(b[44:48]))
	}
	owner := kind&kindOwner != 0 && len(b) >= commAt+kernelCommSize
	if owner {
		copy(comm[:], b[commAt:commAt+kernelCommSize])
	}

	if kind&kindCall != 0 {
		// A connect() failure taken from the syscall's return: after the transition to CLOSE it
		// concluded (deferred), or with no transition at all (latency from the call).
		e.Kind = KindConnect
		e.Pid, e.Comm = pid, comm
		if d, ok := t.deferred[sk]; ok && sk != 0 {
			delete(t.deferred, sk)
			e.Latency, e.Saddr, e.Sport = d.latency, d.saddr, d.sport
			if d.pid != 0 {
				e.Pid, e.Comm = d.pid, d.comm
			}
		} else {
			e.Latency = time.Duration(le.Uint32(b[36:])) * time.Microsecond
		}
		return true
	}

	l := t.socks[sk]
	switch {
	case e.OldState == events.StateClose:
		// A new life: connect() or listen(), in the owner's context.
		if l != nil {
			t.dropListener(sk, l)
		}
		l = &life{}
		t.socks[sk] = l
	case e.OldState == events.StateListen && e.NewState == events.StateSynRecv:
		// A socket accepted by a listener: it starts out owned by the listener's owner.
		l = &life{}
		if p := t.listenerOf(e.Netns, e.Saddr, e.Sport); p != nil {
			l.pid, l.comm = p.pid, p.comm
		}
		t.socks[sk] = l
	case l == nil:
		l = &life{} // first seen mid-life: owner and times unknown
		t.socks[sk] = l
	default:
		if l.lastTs != 0 {
			e.PrevState = time.Duration(e.Mono - l.lastTs)
		}
	}
	if owner {
		l.pid, l.comm = pid, comm
	}
	e.Pid, e.Comm = l.pid, l.comm
	if e.OldState == events.StateSynSent {
		// The time in SYN_SENT is the connect's latency (bpf/connect.h).
		e.Latency = e.PrevState
		if e.Kind&KindConnect == 0 {
			t.deferred[sk] = deferred{latency: e.Latency, pid: l.pid, comm: l.comm, saddr: e.Saddr, sport: e.Sport}
		}
	}
	l.lastTs = e.Mono
	switch {
	case e.NewState == events.StateListen:
		t.addListener(sk, l, portKey{e.Netns, e.Sport}, e.Saddr)
	case e.NewState == events.StateClose:
		t.dropListener(sk, l)
		delete(t.socks, sk)
	}
	return true
}
