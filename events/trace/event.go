// Package trace is the codec of trace's records: it turns what the TCP state and connect programs
// write (bpf/trace.h) into typed events, follows each socket's life (Tracker: owner, times,
// connect outcome), selects them (Filter), and formats them for people (a table, like tcpstates)
// and for programs (JSON lines with stable keys), live or replayed (Printer). Decoding and
// formatting run once per event at up to hundreds of thousands of events a second, so both work
// on caller-owned buffers and allocate nothing.
package trace

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/events"
)

// Kind says what a record carries: a state transition, a connect outcome, or both (the
// transition that concluded a connect).
type Kind uint8

const (
	KindState   Kind = 1
	KindConnect Kind = 2
)

// RecordSize is the size of an event as recordings keep it: the layout of the kernel's records
// before they shrank (bpf/trace.h), with the owner, the time in the previous state and the
// latency filled in.
const RecordSize = 96

// Event is one decoded ring-buffer record.
type Event struct {
	Mono      uint64 // kernel monotonic clock, ns
	PrevState time.Duration
	Latency   time.Duration
	Netns     uint32
	Pid       uint32
	Errno     syscall.Errno // connect outcome; 0 = success
	Sport     uint16
	Dport     uint16
	Saddr     netip.Addr
	Daddr     netip.Addr
	Comm      [16]byte
	Family    uint8
	OldState  events.State
	NewState  events.State
	Kind      Kind
}

const (
	afInet  = 2
	afInet6 = 10
)

// ErrShortRecord is returned for a record smaller than RecordSize.
var ErrShortRecord = errors.New("event record too short")

// Decode fills e from a recorded event (little endian; see RecordSize).
func Decode(b []byte, e *Event) error {
	if len(b) < RecordSize {
		return ErrShortRecord
	}
	le := binary.LittleEndian
	e.Mono = le.Uint64(b[0:])
	e.PrevState = time.Duration(le.Uint64(b[8:]))
	e.Latency = time.Duration(le.Uint64(b[16:]))
	e.Netns = le.Uint32(b[24:])
	e.Pid = le.Uint32(b[28:])
	e.Errno = syscall.Errno(int32(le.Uint32(b[32:])))
	e.Sport = le.Uint16(b[36:])
	e.Dport = le.Uint16(b[38:])
	copy(e.Comm[:], b[72:88])
	e.Family = b[88]
	e.OldState = events.State(b[89])
	e.NewState = events.State(b[90])
	e.Kind = Kind(b[91])
	if e.Family == afInet6 {
		e.Saddr = netip.AddrFrom16([16]byte(b[40:56]))
		e.Daddr = netip.AddrFrom16([16]byte(b[56:72]))
	} else {
		e.Saddr = netip.AddrFrom4([4]byte(b[40:44]))
		e.Daddr = netip.AddrFrom4([4]byte(b[56:60]))
	}
	return nil
}

// RecordNetns reads only the netns inode of a record (0 for a short one), for callers that
// pass records on undecoded.
func RecordNetns(b []byte) uint32 {
	if len(b) < RecordSize {
		return 0
	}
	return binary.LittleEndian.Uint32(b[24:])
}

// CommString returns the owner's command name ("" when the owner is unknown).
func (e *Event) CommString() string {
	n := 0
	for n < len(e.Comm) && e.Comm[n] != 0 {
		n++
	}
	return string(e.Comm[:n])
}

// FamilyName is "ipv4" or "ipv6".
func (e *Event) FamilyName() string {
	if e.Family == afInet6 {
		return "ipv6"
	}
	return "ipv4"
}
