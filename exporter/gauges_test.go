package exporter

import (
	"testing"
	"time"

	"github.com/sockscope/sockscope/loader/counters"
)

const (
	stEstablished = 1
	stSynSent     = 2
	stFinWait1    = 4
	stCloseWait   = 8
	stListen      = 10
)

// fakeKernel plays a namespace's kernel: the walk counts what the sockets are, the moves are
// what the transitions counted, and sockets may move while a walk runs.
type fakeKernel struct {
	moves      counters.Moves
	full       [16]uint32
	tw         int
	requests   uint32 // the listeners' request sockets
	walks      int
	duringWalk func(k *fakeKernel) // a socket moving while the walk runs
}

func (k *fakeKernel) Moves(uint32) (counters.Moves, error) { return k.moves, nil }

func (k *fakeKernel) Sample(_ string, walk bool) (counters.NetnsSample, error) {
	s := counters.NetnsSample{TimeWait: k.tw, PortRange: [2]int{32768, 60999}}
	if walk {
		k.walks++
		s.Full, s.Walked = k.full, true
		if k.duringWalk != nil {
			k.duringWalk(k)
		}
	}
	return s, nil
}

// move is a full socket's transition, as the kernel's program counts it and as it changes what
// a walk finds (CLOSE = 7 is in no table).
func (k *fakeKernel) move(from, to int) {
	if from != 7 {
		k.moves.Out[from]++
		k.full[from]--
	}
	if to != 7 {
		k.moves.In[to]++
		k.full[to]++
	}
}

// A namespace's gauges are its first walk plus the moves since, with the time-wait count and the
// listeners' request sockets read live; later scrapes walk nothing.
func TestSocketGaugesAreAWalkPlusTheMovesSince(t *testing.T) {
	k := &fakeKernel{tw: 4}
	// Before the exporter counted the namespace: a listener and 5 connections (both ends).
	k.full[stListen], k.full[stEstablished] = 1, 10
	// Moves counted since the slot was given, before the walk: they are in the walk already.
	k.moves.In[stEstablished], k.moves.Out[stEstablished] = 7, 2
	c := newCollector(Kernel{}, "test", false)
	c.gk = k
	n := Namespace{Inode: 42, Path: "/run/netns/x"}
	c.ns = map[uint32]Namespace{42: n}
	t0 := time.Unix(1000, 0)

	got := scrapeGauges(t, c, n, k, 0, t0)
	want := map[int]uint32{stListen: 1, stEstablished: 10, 6: 4}
	assertStates(t, "first scrape", got, want)
	if k.walks != 1 || c.gauges.walks != 1 {
		t.Fatalf("walks %d (counted %d), want 1", k.walks, c.gauges.walks)
	}

	// 3 connects (client SYN_SENT -> ESTABLISHED, server clone LISTEN -> SYN_RECV is not a move
	// out of LISTEN: the kernel side counts the clone as entering SYN_RECV only), one close by
	// the peer (ESTABLISHED -> CLOSE_WAIT), and a socket that went ESTABLISHED -> FIN_WAIT1.
	for range 3 {
		k.move(7, stSynSent)
		k.move(stSynSent, stEstablished)
		k.move(7, 3) // the server's child, from the listener's clone
		k.move(3, stEstablished)
	}
	k.move(stEstablished, stCloseWait)
	k.move(stEstablished, stFinWait1)
	k.tw = 9
	k.requests = 2 // two handshakes waiting in the listener's SYN queue
	got = scrapeGauges(t, c, n, k, 2, t0.Add(time.Second))
	want = map[int]uint32{stListen: 1, stEstablished: 14, stCloseWait: 1, stFinWait1: 1, 3: 2, 6: 9}
	assertStates(t, "after the moves", got, want)
	if k.walks != 1 {
		t.Fatalf("a later scrape walked: %d walks", k.walks)
	}
}

// A walk during which sockets moved is not taken as exact: the scrape walks again, up to
// walkTries times, and a namespace that never got a quiet walk is walked at the next scrape.
func TestAWalkDuringWhichSocketsMovedIsTriedAgain(t *testing.T) {
	k := &fakeKernel{}
	k.full[stEstablished] = 4
	moving := 2
	k.duringWalk = func(k *fakeKernel) {
		if moving > 0 {
			moving--
			k.move(7, stSynSent)
		}
	}
	c := newCollector(Kernel{}, "test", false)
	c.gk = k
	n := Namespace{Inode: 7, Path: "/run/netns/y"}
	c.ns = map[uint32]Namespace{7: n}
	got := scrapeGauges(t, c, n, k, 0, time.Unix(1, 0))
	// Two walks saw a socket move; the third was quiet and counted what the walk saw then.
	assertStates(t, "after retries", got, map[int]uint32{stEstablished: 4, stSynSent: 2})
	if k.walks != 3 || !c.gauges.base[7].settled {
		t.Fatalf("walks %d, settled %v; want 3 walks, settled", k.walks, c.gauges.base[7].settled)
	}

	// Always moving: the last walk is kept, unsettled, and the namespace is due at the next scrape.
	k2 := &fakeKernel{}
	k2.duringWalk = func(k *fakeKernel) { k.move(7, stSynSent) }
	c2 := newCollector(Kernel{}, "test", false)
	c2.gk = k2
	n2 := Namespace{Inode: 8, Path: "/run/netns/z"}
	c2.ns = map[uint32]Namespace{8: n2}
	scrapeGauges(t, c2, n2, k2, 0, time.Unix(1, 0))
	if k2.walks != walkTries || c2.gauges.base[8].settled {
		t.Fatalf("walks %d, settled %v; want %d, unsettled", k2.walks, c2.gauges.base[8].settled, walkTries)
	}
	if due := c2.dueForWalk(time.Unix(2, 0)); due != 8 {
		t.Fatalf("due for a walk: %d, want 8 (unsettled)", due)
	}
}

// Reconciliation: a quiet walk after a transition the kernel never reported corrects the gauge,
// and the correction is counted; with Reconcile 0 no settled namespace is ever walked again.
func TestReconcilingWalkCorrectsAndCountsAMissedTransition(t *testing.T) {
	k := &fakeKernel{}
	k.full[stEstablished] = 6
	c := newCollector(Kernel{Reconcile: time.Minute}, "test", false)
	c.gk = k
	n := Namespace{Inode: 9, Path: "/run/netns/w"}
	c.ns = map[uint32]Namespace{9: n}
	t0 := time.Unix(1000, 0)
	scrapeGauges(t, c, n, k, 0, t0)
	// Two sockets vanish without a transition (as a missed event would look).
	k.full[stEstablished] -= 2
	got := scrapeGauges(t, c, n, k, 0, t0.Add(30*time.Second))
	assertStates(t, "before reconciling", got, map[int]uint32{stEstablished: 6})
	if due := c.dueForWalk(t0.Add(30 * time.Second)); due != 0 {
		t.Fatalf("due after 30s of a 1m interval: %d", due)
	}
	at := t0.Add(61 * time.Second)
	due := c.dueForWalk(at)
	if due != 9 {
		t.Fatalf("due after 61s: %d, want 9", due)
	}
	got = scrapeGauges(t, c, n, k, due, at)
	assertStates(t, "reconciled", got, map[int]uint32{stEstablished: 4})
	if c.gauges.corrections != 2 || c.gauges.walks != 2 {
		t.Fatalf("corrections %d, walks %d; want 2 and 2", c.gauges.corrections, c.gauges.walks)
	}
	c.k.Reconcile = 0
	if due := c.dueForWalk(at.Add(time.Hour)); due != 0 {
		t.Fatalf("Reconcile 0: due %d", due)
	}
}

func TestGaugeArithmetic(t *testing.T) {
	b := gaugeBase{walk: [16]uint32{stEstablished: 5, stListen: 1}}
	b.moves.In[stEstablished], b.moves.Out[stEstablished] = 10, 3
	now := b.moves
	now.In[stEstablished] += 4 // 14
	now.Out[stEstablished] += 1
	now.Out[stListen] += 2 // more out than the walk had: a missed move reads 0, not a wraparound
	full := b.full(now)
	if full[stEstablished] != 8 || full[stListen] != 0 {
		t.Errorf("full %v: want ESTABLISHED 8, LISTEN 0", full)
	}
	if d := disagreement([16]uint64{stEstablished: 8, stListen: 0}, [16]uint32{stEstablished: 6, stListen: 1}); d != 3 {
		t.Errorf("disagreement %d, want 3", d)
	}
	st := socketStates([16]uint64{3: 1, stEstablished: 2}, 5, 7)
	if st[3] != 6 || st[6] != 7 || st[stEstablished] != 2 {
		t.Errorf("states %v: want SYN_RECV 1+5, TIME_WAIT 7", st)
	}
	moves := movesOf([]counters.Counter{
		{Netns: 1, Kind: counters.KindMoveIn, Arg: stListen, Value: 3},
		{Netns: 1, Kind: counters.KindMoveOut, Arg: stListen, Value: 1},
		{Netns: 1, Kind: counters.KindTransition, Arg: 7<<8 | stListen, Value: 3},
		{Netns: 2, Kind: counters.KindMoveIn, Arg: stEstablished, Value: 9},
	})
	if len(moves) != 2 || moves[1].In[stListen] != 3 || moves[1].Out[stListen] != 1 || moves[2].In[stEstablished] != 9 {
		t.Errorf("moves %+v", moves)
	}
}

// scrapeGauges runs one scrape's gauge read of n, with the moves as the scrape's counter read
// gives them, walking it if it is the namespace due.
func scrapeGauges(t *testing.T, c *Collector, n Namespace, k *fakeKernel, due uint32, now time.Time) [16]uint32 {
	t.Helper()
	m := k.moves
	counts, err := c.gaugeSockets(n, &m, k.requests, due == n.Inode, now)
	if err != nil {
		t.Fatal(err)
	}
	return counts.States
}

func assertStates(t *testing.T, what string, got [16]uint32, want map[int]uint32) {
	t.Helper()
	for st := range got {
		if got[st] != want[st] {
			t.Errorf("%s: state %d = %d, want %d (all: %v)", what, st, got[st], want[st], got)
		}
	}
}
