package trace

import (
	"os"
	"testing"
	"time"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/internal/churn"
	"github.com/sockscope/sockscope/internal/testenv"
	"github.com/sockscope/sockscope/loader"
)

// Transitions made in a softirq that nests in on_state are skipped by the kernel; its twin,
// on_state_nested, writes their records instead (bpf/nested.h). Loopback packets steered to the
// other CPU make such nesting common: the test makes connections until the kernel has skipped
// on_state at least 20 times, then requires that the twin took over every skipped run (nothing
// reported lost). As in loader/counters' twin test, the records are compared with the traffic
// exactly only with SOCKSCOPE_NESTED_EXACT=1 (issue 12: about one transition in 5,000 is missing
// under this steering without any program having been skipped for it); otherwise a difference
// is logged.
func TestTheTwinRecordsWhatTheKernelSkipped(t *testing.T) {
	testenv.Root(t)
	testenv.BTF(t)
	if err := loader.Memlock(); err != nil {
		t.Fatal(err)
	}
	ns := churn.New(t)
	tr, err := Open(Config{FilterNetns: true, Netns: []uint32{ns.Inode}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tracking := NewTracking(tr)
	got := map[[2]events.State]int{}
	count := func(ev *events.Event) {
		if ev.OldState != ev.NewState { // Go's probe sockets close without leaving CLOSE
			got[[2]events.State{ev.OldState, ev.NewState}]++
		}
	}

	const perRound, wantSkipped, maxRounds = 500, 20, 40
	conns := 0
	var skipped uint64
	for round := 0; round < maxRounds && skipped < wantSkipped; round++ {
		if err := ns.Connections(perRound); err != nil {
			t.Fatal(err)
		}
		conns += perRound
		tracking.Drain(count) // the ring holds 4 MiB: drain as the test goes
		if skipped, err = loader.RecursionMisses(tr.objs.OnState); err != nil {
			t.Fatal(err)
		}
	}
	if skipped < wantSkipped {
		t.Fatalf("the kernel skipped on_state %d times in %d connections; the test needs %d to prove anything", skipped, conns, wantSkipped)
	}

	rounds := conns / perRound
	want := map[[2]events.State]int{
		{events.StateClose, events.StateSynSent}: conns, {events.StateSynSent, events.StateEstablished}: conns,
		{events.StateEstablished, events.StateFinWait1}: conns, {events.StateFinWait1, events.StateFinWait2}: conns,
		{events.StateFinWait2, events.StateClose}: conns, {events.StateListen, events.StateSynRecv}: conns,
		{events.StateSynRecv, events.StateEstablished}: conns, {events.StateEstablished, events.StateCloseWait}: conns,
		{events.StateCloseWait, events.StateLastAck}: conns, {events.StateLastAck, events.StateClose}: conns,
		{events.StateClose, events.StateListen}: rounds, {events.StateListen, events.StateClose}: rounds,
	}
	// The last ACKs may land a moment after the sockets closed.
	for deadline := time.Now().Add(10 * time.Second); !sameCounts(got, want) && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		tracking.Drain(count)
	}
	report := t.Logf
	if os.Getenv("SOCKSCOPE_NESTED_EXACT") == "1" {
		report = t.Errorf
	}
	if !sameCounts(got, want) {
		report("%d connections, on_state skipped %d times: transitions %v, want %v", conns, skipped, got, want)
	}
	lost, err := tr.Lost()
	if err != nil {
		t.Fatal(err)
	}
	if lost.Total() != 0 {
		t.Errorf("lost %+v; the twin should have taken over every skipped run", lost)
	}
	if skipped, err = loader.RecursionMisses(tr.objs.OnState); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d connections; the kernel skipped on_state %d times, and the twin recorded those transitions", conns, skipped)
}

func sameCounts(a, b map[[2]events.State]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
