package trace

import (
	"maps"
	"os"
	"testing"
	"time"

	etrace "github.com/sockscope/sockscope/events/trace"
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
	got := map[[2]uint8]int{}
	count := func(ev *etrace.Event) {
		if ev.OldState != ev.NewState { // Go's probe sockets close without leaving CLOSE
			got[[2]uint8{uint8(ev.OldState), uint8(ev.NewState)}]++
		}
	}

	// The ring holds 4 MiB: drain it as the test goes.
	conns, rounds := ns.UntilSkipped(t, func() (uint64, error) { return loader.RecursionMisses(tr.objs.OnState) },
		func() { tracking.Drain(count) })
	want := churn.Transitions(conns, rounds)
	// The last ACKs may land a moment after the sockets closed.
	for deadline := time.Now().Add(10 * time.Second); !maps.Equal(got, want) && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		tracking.Drain(count)
	}
	report := t.Logf
	if os.Getenv("SOCKSCOPE_NESTED_EXACT") == "1" {
		report = t.Errorf
	}
	if !maps.Equal(got, want) {
		report("%d connections: transitions %v, want %v", conns, got, want)
	}
	lost, err := tr.Lost()
	if err != nil {
		t.Fatal(err)
	}
	if lost.Total() != 0 {
		t.Errorf("lost %+v; the twin should have taken over every skipped run", lost)
	}
	skipped, err := loader.RecursionMisses(tr.objs.OnState)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d connections; the kernel skipped on_state %d times, and the twin recorded those transitions", conns, skipped)
}
