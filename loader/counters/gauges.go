package counters

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/sockscope/sockscope/loader"
)

// The exporter's socket gauges (bpf/export.bpf.c): the kernel counts every move of a full
// socket into and out of each state, per namespace; a namespace's sockets per state are one
// walk's count plus the moves since. What no transition shows is read live: the request sockets
// of the namespace's listeners (one run of a program over the table of listeners alone) and its
// time-wait count.

// Moves are one namespace's socket moves since its slot was given, summed over CPUs: In[s] full
// sockets entered state s, Out[s] left it. Both only grow.
type Moves struct {
	In, Out [16]uint64
}

// Moves reads one counted namespace's moves: one lookup of its slot.
func (e *Counters) Moves(netns uint32) (Moves, error) {
	var m Moves
	s, ok := e.slots[netns]
	if !ok {
		return m, fmt.Errorf("network namespace %d is not counted", netns)
	}
	if err := e.readSlot(s); err != nil {
		return m, err
	}
	for i := range e.per {
		for st := range m.In {
			m.In[st] += e.per[i].GaugeIn[st]
			m.Out[st] += e.per[i].GaugeOut[st]
		}
	}
	return m, nil
}

// NetnsSample is what a scrape reads inside one namespace.
type NetnsSample struct {
	PortRange [2]int // net.ipv4.ip_local_port_range; -1 where unreadable
	TWReuse   int    // net.ipv4.tcp_tw_reuse; -1 where unreadable
	// TimeWait is the namespace's time-wait sockets, as the kernel counts them (sockstat's "tw"): every entry of the time-wait table, those that ss lists as FIN-WAIT-2 (an orphaned
	// connection waiting for its peer's FIN) included. -1 where unreadable.
	TimeWait int
	// Full is, when the sample walked, the full sockets per state (walk_full): neither time-wait
	// nor request sockets.
	Full   [16]uint32
	Walked bool
}

// Sample enters the namespace at nsPath, reads its port sysctls and time-wait count and, with
// walk, counts its full sockets per state with one walk of its TCP tables (which also marks its
// listeners for Requests). Without walk it costs a few small file reads, whatever the size of
// the host's TCP hash.
func (e *Counters) Sample(nsPath string, walk bool) (NetnsSample, error) {
	var s NetnsSample
	var rd io.ReadCloser
	if walk {
		e.walkMu.Lock() // walk_full keeps one walk's counts in globals
		defer e.walkMu.Unlock()
	}
	err := loader.InNetns(nsPath, func() error {
		if walk {
			var err error
			if rd, err = e.walk.Open(); err != nil {
				return fmt.Errorf("open iter/tcp: %w", err)
			}
		}
		s.PortRange, s.TWReuse = loader.ReadPortSysctls()
		// /proc/net is the thread group leader's namespace; thread-self is this thread's.
		s.TimeWait = readSockstatTW("/proc/thread-self/net/sockstat")
		return nil
	})
	if err != nil {
		return s, err
	}
	if rd == nil {
		return s, nil
	}
	defer rd.Close()
	var buf [64]byte
	if _, err := io.ReadFull(rd, buf[:]); err != nil {
		return s, fmt.Errorf("read iter/tcp counts: %w", err)
	}
	for i := range s.Full {
		s.Full[i] = binary.NativeEndian.Uint32(buf[4*i:])
	}
	s.Walked = true
	return s, nil
}

// Requests returns the request sockets (handshakes before their full socket, which ss lists as
// SYN_RECV) of each counted namespace's listeners: one run of read_requests over the table of
// listeners, then one pass over that table.
func (e *Counters) Requests() (map[uint32]uint32, error) {
	e.walkMu.Lock() // one reader of the listeners' request counts at a time
	defer e.walkMu.Unlock()
	if _, err := e.objs.ReadRequests.Run(&ebpf.RunOptions{}); err != nil {
		return nil, fmt.Errorf("read the listeners' request sockets: %w", err)
	}
	out := map[uint32]uint32{}
	var addr uint64
	var l exportListenerEntry
	it := e.objs.Listeners.Iterate()
	for it.Next(&addr, &l) {
		if _, ok := e.slots[l.Netns]; ok {
			out[l.Netns] += l.Requests
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read the listeners table: %w", err)
	}
	return out, nil
}

// dropListeners removes the listeners of namespaces no longer counted from the table.
func (e *Counters) dropListeners(counted func(netns uint32) bool) error {
	var drop []uint64
	var addr uint64
	var l exportListenerEntry
	it := e.objs.Listeners.Iterate()
	for it.Next(&addr, &l) {
		if !counted(l.Netns) {
			drop = append(drop, addr)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read the listeners table: %w", err)
	}
	for _, a := range drop {
		if err := e.objs.Listeners.Delete(a); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("drop a listener: %w", err)
		}
	}
	return nil
}

// attachGauges attaches the iterator of the socket gauges.
func (e *Counters) attachGauges() (err error) {
	if e.walk, err = link.AttachIter(link.IterOptions{Program: e.objs.WalkFull}); err != nil {
		return loader.Missing("attach iter/tcp", err, loader.NeedIterTCP)
	}
	return nil
}

// readSockstatTW reads the "tw" count of the TCP line of a sockstat file; -1 where unreadable.
func readSockstatTW(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	n, err := parseSockstatTW(f)
	if err != nil {
		return -1
	}
	return n
}

// parseSockstatTW finds "TCP: inuse N orphan N tw N ..." and returns the number after tw.
func parseSockstatTW(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if f[i] == "tw" {
				return strconv.Atoi(f[i+1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no TCP tw count")
}
