package containers

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// Follow names namespaces from now on and, with --container, keeps the kernel's netns filter
// (setNetns) equal to the selected containers' namespaces plus --netns as they start, restart and
// stop. setup, when not nil, configures the watcher's hooks before its first sync. Warnings and
// filter errors go to stderr, one line each; the watcher runs until ctx ends.
func Follow(ctx context.Context, sc *Scope, setNetns func([]uint32) error, stderr io.Writer, setup ...func(*Watcher)) (*Watcher, error) {
	var mu sync.Mutex
	var onChange func([]uint32)
	if len(sc.Selected) > 0 {
		onChange = func(netns []uint32) {
			mu.Lock()
			defer mu.Unlock()
			if err := setNetns(netns); err != nil {
				fmt.Fprintf(stderr, "sockscope: %v\n", err)
			}
		}
	}
	w := sc.NewWatcher(onChange)
	w.OnError = func(rt Info, err error) {
		fmt.Fprintf(stderr, "sockscope: warning: %s: %v\n", rt.Kind, err)
	}
	for _, f := range setup {
		f(w)
	}
	if err := w.Sync(ctx); err != nil {
		if len(sc.Selected) > 0 {
			return nil, err
		}
		fmt.Fprintf(stderr, "sockscope: warning: %v\n", err)
	}
	go w.Run(ctx)
	return w, nil
}
