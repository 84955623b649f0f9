package trace

import (
	"time"

	"github.com/sockscope/sockscope/events"
	etrace "github.com/sockscope/sockscope/events/trace"
)

// PollInterval is how often a reader drains the trace ring buffer: the kernel side never wakes it
// (see bpf/trace.bpf.c). At 560,000 events/s a 4 MiB ring holds about 140 ms, 14 intervals.
// trace flushes its output at the same pace, so an event reaches the terminal within about 10 ms.
const PollInterval = 10 * time.Millisecond

// Tracking turns the trace programs' records into events, with their sockets' owners and times
// (etrace.Tracker): the reader that trace and record share.
type Tracking struct {
	tracer  *Tracer
	tracker *etrace.Tracker
	ev      etrace.Event
}

// NewTracking reads t's records from now on.
func NewTracking(t *Tracer) *Tracking {
	return &Tracking{tracer: t, tracker: etrace.NewTracker()}
}

// Drain seeds the owners found since the last drain, then hands each event to fn. The event is
// reused: fn must copy what it keeps.
func (t *Tracking) Drain(fn func(ev *etrace.Event)) {
	for _, o := range t.tracer.TakeOwners() {
		t.tracker.Seed(o.Sk, o.Netns, o.Pid, o.Comm, events.State(o.State), o.Port)
	}
	t.tracer.Drain(func(rec []byte) {
		if t.tracker.Event(rec, &t.ev) {
			fn(&t.ev)
		}
	})
}

// Follow is the reading loop of trace and record. It drains every PollInterval, handing each
// event to fn, and then calls batch, which writes what fn gathered and says whether to end
// (done) or fail. When stop closes, it detaches the programs (once that returns, every record
// they wrote is committed), drains the rest and calls batch(true) a last time. It returns
// batch's error, or nil once batch said done or stop closed; after done, nothing more is drained.
func (t *Tracking) Follow(stop <-chan struct{}, fn func(ev *etrace.Event), batch func(final bool) (done bool, err error)) error {
	poll := time.NewTicker(PollInterval)
	defer poll.Stop()
	for {
		select {
		case <-stop:
			t.tracer.Detach()
			t.Drain(fn)
			_, err := batch(true)
			return err
		case <-poll.C:
		}
		t.Drain(fn)
		if done, err := batch(false); done || err != nil {
			t.tracer.Detach()
			return err
		}
	}
}
