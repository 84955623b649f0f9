package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/trace"
	"github.com/sockscope/sockscope/loader"
	ktrace "github.com/sockscope/sockscope/loader/trace"
	"github.com/sockscope/sockscope/recording"
)

// TraceOptions say what trace follows and how it prints.
type TraceOptions struct {
	Scope    containers.Spec // --container, --netns and the runtimes
	Config   ktrace.Config   // the kernel's filters; its namespaces come from Scope
	Filter   trace.Filter    // user space's filters, applied after the tracker
	JSON     bool
	Count    int               // stop after this many output lines; 0: no limit
	Stdout   io.Writer         // the events
	Stderr   io.Writer         // warnings, losses and the summary
	Attached func(what string) // called once attached, with what is traced (the command catches its signals then)
	Until    time.Duration     // stop after this long; 0: when ctx ends
}

// Trace traces live until ctx ends, Until passes, Count lines are written, or the output's reader
// goes away. The events that are read are printed before it returns, then a summary.
func Trace(ctx context.Context, o TraceOptions) error {
	// ctx ends the trace; naming goes on until the last event is printed.
	nameCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	sc, err := openScope(nameCtx, o.Scope, o.Stderr)
	if err != nil {
		return err
	}
	defer sc.Close()
	cfg := o.Config
	cfg.FilterNetns, cfg.Netns = sc.Filtered(), sc.FixedInodes()
	tracer, err := ktrace.Open(cfg)
	if err != nil {
		return err
	}
	defer tracer.Close()
	loader.ReleaseBTF() // everything is loaded
	w, err := containers.Follow(nameCtx, sc, tracer.SetNetns, o.Stderr)
	if err != nil {
		return err
	}
	if o.Attached != nil {
		o.Attached(sc.Describe())
	}
	stop := ctx.Done()
	if o.Until > 0 {
		var end context.CancelFunc
		ctx, end = context.WithTimeout(ctx, o.Until)
		defer end()
		stop = ctx.Done()
	}
	return traceLoop(nameCtx, tracer, w, o, stop)
}

func traceLoop(ctx context.Context, tracer *ktrace.Tracer, names *containers.Watcher, o TraceOptions, stop <-chan struct{}) error {
	// Lost events are reported as they happen, not only at the end.
	var lostReported atomic.Uint64
	reportLost := func(l ktrace.Lost) {
		if prev := lostReported.Swap(l.Total()); l.Total() > prev {
			fmt.Fprintf(o.Stderr, "sockscope: lost %d events (%d in all: %d ring buffer full, %d skipped by the kernel while the program ran on that CPU, %d sockets the owner filter could not follow)\n",
				l.Total()-prev, l.Total(), l.RingFull, l.Nested, l.Owned)
		}
	}
	out := trace.NewPrinter(o.Stdout, events.NewClock(), o.JSON, o.Count)
	tr := ktrace.NewTracking(tracer)
	var (
		full, pipeClosed bool
		werr             error
	)
	flush := func() error {
		if err := out.Flush(); err != nil {
			if pipeClosed = isEPIPE(err); !pipeClosed {
				return fmt.Errorf("write output: %w", err)
			}
		}
		return nil
	}
	take := func(ev *trace.Event) {
		if full || pipeClosed || werr != nil || !o.Filter.Keep(ev) {
			return
		}
		name, ok := names.Resolve(ctx, ev.Netns)
		full = out.Add(ev, name, ok)
		if out.Full() {
			werr = flush()
		}
	}
	lastLost := time.Now()
	err := tr.Follow(stop, take, func(final bool) (bool, error) {
		if werr != nil {
			return true, werr
		}
		if err := flush(); err != nil {
			return true, err
		}
		if !final && time.Since(lastLost) >= time.Second {
			lastLost = time.Now()
			if l, err := tracer.Lost(); err == nil {
				reportLost(l)
			}
		}
		return full || pipeClosed, nil
	})
	if err != nil || pipeClosed {
		return err
	}
	lost, err := tracer.Lost()
	if err != nil {
		return err
	}
	reportLost(lost)
	out.Summary(o.Stderr, lost.Total())
	return nil
}

// ReplayTrace prints a recording's events as a live trace with the same options would have
// printed them; file names the recording in errors. Only the recorded namespaces in netns are
// shown (nil: all).
func ReplayTrace(rec *recording.File, file string, netns map[uint32]bool, o TraceOptions) error {
	filter := o.Filter
	filter.Netns = netns
	clock := rec.Clock()
	names := rec.Namer()
	out := trace.NewPrinter(o.Stdout, clock, o.JSON, o.Count)
	errDone := errors.New("done")
	err := rec.Scan(recording.Visitor{Events: func(_ time.Time, evs []trace.Event) error {
		for i := range evs {
			ev := &evs[i]
			if !filter.Keep(ev) {
				continue
			}
			name, ok := names.Lookup(ev.Netns, clock.Wall(ev.Mono))
			full := out.Add(ev, name, ok)
			if out.Full() || full {
				if err := out.Flush(); err != nil {
					if isEPIPE(err) {
						return errDone
					}
					return fmt.Errorf("write output: %w", err)
				}
			}
			if full {
				return errDone
			}
		}
		return nil
	}})
	if errors.Is(err, errDone) {
		err = nil
	}
	if err != nil {
		return recording.ScanError(file, err) // what is still buffered stays unprinted: a bad file prints one line
	}
	if err := out.Flush(); err != nil && !isEPIPE(err) {
		return fmt.Errorf("write output: %w", err)
	}
	out.Summary(o.Stderr, rec.Lost.Total())
	return nil
}
