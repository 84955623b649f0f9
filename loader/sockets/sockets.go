// Package sockets reads the kernel's TCP socket tables with BPF iterators (bpf/sockets.bpf.c):
// every TCP socket of a network namespace, time-wait and request sockets included, their owners,
// and the per-state counts. events/ decodes the records.
package sockets

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/cilium/ebpf/link"
	"github.com/sockscope/sockscope/loader"
)

// Iterators are the socket iterators, attached: they read every TCP socket of a network
// namespace, time-wait and request sockets included, and the processes that own them.
type Iterators struct {
	objs   socketsObjects
	tcp    *link.Iter
	owners *link.Iter
	count  *link.Iter
	// count_tcp keeps one walk's counts in global variables: one walk at a time.
	countMu sync.Mutex
}

// Open loads and attaches the iterators; they are opened once per snapshot.
func Open() (*Iterators, error) {
	if err := loader.Memlock(); err != nil {
		return nil, err
	}
	s := &Iterators{}
	if err := loadSocketsObjects(&s.objs, loader.LoadOptions()); err != nil {
		return nil, loader.Missing("load the socket iterators", err, loader.NeedBTF, loader.NeedIterTCP, loader.NeedIterTaskFile)
	}
	var err error
	if s.tcp, err = link.AttachIter(link.IterOptions{Program: s.objs.DumpTcp}); err != nil {
		s.Close()
		return nil, loader.Missing("attach iter/tcp", err, loader.NeedIterTCP)
	}
	if s.owners, err = link.AttachIter(link.IterOptions{Program: s.objs.DumpOwners}); err != nil {
		s.Close()
		return nil, loader.Missing("attach iter/task_file", err, loader.NeedIterTaskFile)
	}
	if s.count, err = link.AttachIter(link.IterOptions{Program: s.objs.CountTcp}); err != nil {
		s.Close()
		return nil, fmt.Errorf("attach iter/tcp: %w", err)
	}
	return s, nil
}

// Close detaches the iterators.
func (s *Iterators) Close() error {
	for _, l := range []*link.Iter{s.tcp, s.owners, s.count} {
		if l != nil {
			l.Close()
		}
	}
	return s.objs.Close()
}

// Snapshot is what one network namespace holds: its TCP sockets as raw sock_records
// (see events/sockets.DecodeSockets) and the sysctls that decide how many local ports a client has.
type Snapshot struct {
	Records   []byte
	PortRange [2]int // net.ipv4.ip_local_port_range
	TWReuse   int    // net.ipv4.tcp_tw_reuse
	Somaxconn int    // net.core.somaxconn
}

// Snapshot lists the TCP sockets of the network namespace at nsPath (e.g. /proc/PID/ns/net).
// A BPF iterator sees the namespace of the thread that opens it, so a locked OS thread enters
// the namespace, opens the iterator and reads the sysctls there, and returns to where it was.
func (s *Iterators) Snapshot(nsPath string) (Snapshot, error) {
	var snap Snapshot
	rd, err := loader.OpenIn(nsPath, s.tcp, &snap.PortRange, &snap.TWReuse, &snap.Somaxconn)
	if err != nil {
		return snap, err
	}
	defer rd.Close()
	if snap.Records, err = loader.ReadAll(rd); err != nil {
		return snap, fmt.Errorf("read iter/tcp: %w", err)
	}
	return snap, nil
}

// Counts is how many TCP sockets a network namespace has in each state (indexed by the
// kernel's state number, as ss shows them: time-wait sockets by substate, request sockets as
// SYN_RECV), and its port sysctls.
type Counts struct {
	States    [16]uint32
	PortRange [2]int
	TWReuse   int
}

// Count counts the TCP sockets of the network namespace at nsPath by state. The kernel does the
// counting; one 64-byte record comes back, whatever the number of sockets.
func (s *Iterators) Count(nsPath string) (Counts, error) {
	var c Counts
	s.countMu.Lock()
	defer s.countMu.Unlock()
	rd, err := loader.OpenIn(nsPath, s.count, &c.PortRange, &c.TWReuse, nil)
	if err != nil {
		return c, err
	}
	defer rd.Close()
	var buf [64]byte
	if _, err := io.ReadFull(rd, buf[:]); err != nil {
		return c, fmt.Errorf("read iter/tcp counts: %w", err)
	}
	for i := range c.States {
		c.States[i] = binary.NativeEndian.Uint32(buf[4*i:])
	}
	return c, nil
}

// Owners returns the owner records of every process's TCP socket files, laid out as recordings
// keep them (events/sockets.OwnerRecordSize bytes each: inode, pid, comm).
func (s *Iterators) Owners() ([]byte, error) {
	rd, err := s.owners.Open()
	if err != nil {
		return nil, fmt.Errorf("open iter/task_file: %w", err)
	}
	defer rd.Close()
	b, err := loader.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read iter/task_file: %w", err)
	}
	// The first 24 bytes of each owner_record (bpf/owner.h) are the recorded layout.
	out := b[:0]
	for ; len(b) >= loader.OwnerRecordSize; b = b[loader.OwnerRecordSize:] {
		out = append(out, b[:recordedOwnerSize]...)
	}
	return out, nil
}

// recordedOwnerSize is events/sockets.OwnerRecordSize: inode, pid, comm.
const recordedOwnerSize = 24
