// Package console runs the commands that print to a terminal: trace, sockets and syscalls.
// Each runs live, from the kernel through its capability's loader, or replays a recording; both
// go through the capability's one printer (events/trace, events/sockets, events/syscalls), so a
// replay prints what the live command would have. The command line (cmd/sockscope) parses and
// checks the flags, catches the signals, and calls one function here.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
)

// openScope resolves the runtimes, --container and --netns; the warnings go to stderr, a line each.
func openScope(ctx context.Context, spec containers.Spec, stderr io.Writer) (*containers.Scope, error) {
	sc, warnings, err := containers.NewScope(ctx, spec)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "sockscope: warning: %s\n", events.Printable(w))
	}
	return sc, nil
}

func isEPIPE(err error) bool { return errors.Is(err, syscall.EPIPE) }
