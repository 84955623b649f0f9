package exporter

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockscope/sockscope/loader/counters"
)

// The socket gauges (sockscope_tcp_sockets) without a walk per scrape: the kernel counts each
// move of a full socket into and out of each state (counters.Moves), so a namespace's full
// sockets per state are what one walk counted plus the moves since that walk. A walk is made
// when a namespace is first counted, and again every Kernel.Reconcile (one namespace per scrape),
// which corrects the gauges if a transition was ever missed and says by how much
// (sockscope_tcp_socket_corrections_total).
//
// The walk and the transitions race: a socket that moves while the walk runs may be counted by
// the walk in its new state and by the moves too. So the moves are read before and after the
// walk; if they did not change (they only grow, so no socket of the namespace moved), the walk is
// exact. Otherwise it is tried again, up to walkTries times; a namespace whose sockets kept moving
// takes the last walk, off by at most the moves during it, and is walked again at the next scrape.
//
// Time-wait and request sockets pass no transition: they are read live at every scrape (the
// namespace's time-wait count, its listeners' SYN queues).

// walkTries is how many walks a scrape makes of one namespace whose sockets move meanwhile.
const walkTries = 3

// gaugeBase is where a namespace's gauges start: a walk, and the moves when it was exact.
type gaugeBase struct {
	walk    [16]uint32
	moves   counters.Moves
	at      time.Time
	settled bool // no socket moved during the walk
}

// full returns the full sockets per state, given the moves now: the walk, plus what entered each
// state since, less what left it. A count below zero (a transition the kernel did not report)
// reads 0 until the next walk corrects it.
func (b gaugeBase) full(now counters.Moves) [16]uint64 {
	var out [16]uint64
	for st := range out {
		v := int64(b.walk[st]) + int64(now.In[st]-b.moves.In[st]) - int64(now.Out[st]-b.moves.Out[st])
		if v > 0 {
			out[st] = uint64(v)
		}
	}
	return out
}

// disagreement is by how many sockets, summed over states, the gauges differ from a walk.
func disagreement(gauge [16]uint64, walk [16]uint32) uint64 {
	var d uint64
	for st := range gauge {
		w := uint64(walk[st])
		if gauge[st] > w {
			d += gauge[st] - w
		} else {
			d += w - gauge[st]
		}
	}
	return d
}

// socketStates assembles the counts sockscope_tcp_sockets shows, per state as ss does: the
// full sockets, the listeners' request sockets in SYN_RECV, and the time-wait table in TIME_WAIT.
func socketStates(full [16]uint64, requests uint32, timeWait int) [16]uint64 {
	out := full
	out[tcpSynRecv] += uint64(requests)
	if timeWait >= 0 {
		out[tcpTimeWait] = uint64(timeWait)
	}
	return out
}

const (
	tcpSynRecv  = 3
	tcpTimeWait = 6
)

// movesOf gathers each namespace's moves from a read of the counters.
func movesOf(buf []counters.Counter) map[uint32]*counters.Moves {
	out := map[uint32]*counters.Moves{}
	for _, k := range buf {
		if k.Kind != counters.KindMoveIn && k.Kind != counters.KindMoveOut || k.Arg >= 16 {
			continue
		}
		m := out[k.Netns]
		if m == nil {
			m = &counters.Moves{}
			out[k.Netns] = m
		}
		if k.Kind == counters.KindMoveIn {
			m.In[k.Arg] = k.Value
		} else {
			m.Out[k.Arg] = k.Value
		}
	}
	return out
}

// gaugeKernel is what the gauges read of the kernel (counters.Counters).
type gaugeKernel interface {
	Moves(netns uint32) (counters.Moves, error)
	Sample(nsPath string, walk bool) (counters.NetnsSample, error)
}

// walkBase walks a namespace until no socket moved during a walk (at most walkTries times) and
// returns the sample of the last walk and the base it gives.
func walkBase(k gaugeKernel, n Namespace, now time.Time) (counters.NetnsSample, gaugeBase, int, error) {
	var s counters.NetnsSample
	var b gaugeBase
	for try := 1; ; try++ {
		before, err := k.Moves(n.Inode)
		if err != nil {
			return s, b, try - 1, err
		}
		if s, err = k.Sample(n.Path, true); err != nil {
			return s, b, try, err
		}
		after, err := k.Moves(n.Inode)
		if err != nil {
			return s, b, try, err
		}
		b = gaugeBase{walk: s.Full, moves: after, at: now, settled: before == after}
		if b.settled || try == walkTries {
			return s, b, try, nil
		}
	}
}

// gaugeState is the collector's memory of the gauges: a base per counted namespace, and what
// the walks found.
type gaugeState struct {
	base        map[uint32]gaugeBase
	walks       uint64
	corrections uint64
}

var (
	descGaugeWalks = prometheus.NewDesc("sockscope_tcp_socket_walks_total",
		"Walks of a namespace's TCP tables for sockscope_tcp_sockets: one when the namespace is first counted, then one per --sockets.reconcile interval (at most one namespace per scrape), and again while its sockets moved during a walk. With --sockets.walk or --top-remotes every scrape walks every namespace, not counted here.", nil, nil)
	descGaugeCorrections = prometheus.NewDesc("sockscope_tcp_socket_corrections_total",
		"Sockets, summed over states, by which the gauges kept from transitions differed from a later walk during which no socket moved; the walk's counts were then taken. 0 unless the kernel missed a transition.", nil, nil)
)
