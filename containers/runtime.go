package containers

import (
	"context"
	"errors"
	"time"
)

// Runtime is one container runtime that names network namespaces: a Docker-compatible engine
// (Docker, podman) or a CRI runtime (containerd, CRI-O, cri-dockerd). Implementations are safe
// for concurrent use.
type Runtime interface {
	// Info says which runtime this is and where it answers.
	Info() Info
	// Running returns the running containers and pod sandboxes, each with its Pid and Netns. A
	// container that stops while the list is being made is left out. Implementations look up
	// only what they have not seen before.
	Running(ctx context.Context) ([]Container, error)
	// All returns every container and pod sandbox the runtime knows, running or not, with Up set
	// but without Pid or Netns: what a user's query is matched against.
	All(ctx context.Context) ([]Container, error)
	// Watch reports changes until ctx is done or the connection to the runtime fails (the error
	// says why). It calls notify once as soon as it follows the runtime, so that nothing between
	// an earlier Running and the subscription is missed, and then for every change. notify is
	// called from Watch's goroutine.
	Watch(ctx context.Context, notify func(Event)) error
	// Close releases the connection.
	Close() error
}

// Info describes a runtime.
type Info struct {
	Kind     string // docker, podman, containerd, cri-o, cri-dockerd, or cri for another CRI runtime
	Endpoint string // where it answers, e.g. unix:///run/containerd/containerd.sock
	Version  string // e.g. "20.10.24 (API 1.41)", "1.6.20 (CRI v1)"
}

// Event is one change a runtime reported.
type Event struct {
	// Stopped is the ID of a container that stopped, with its exit code; empty for any other
	// change, after which Running tells what changed.
	Stopped  string
	ExitCode int
	At       time.Time // when the runtime saw it; zero when unknown
	// Name and Image of a stopped container, when the runtime's event says: a container that
	// lived too briefly to be listed is still known by them.
	Name, Image string
	// Changed is the ID of a container that started, restarted or was renamed, when the runtime
	// says which; a cached lookup of it is stale.
	Changed string
}

// ErrNotFound is wrapped by errors about containers that the runtime does not know (any more).
var ErrNotFound = errors.New("container not found")

// ErrNoProcess means the runtime names a PID for a running container that /proc does not show:
// the container is exiting or restarting, or sockscope does not see the host's PID namespace.
var ErrNoProcess = errors.New("that process is not visible")

// exitPatience is how long to wait before asking a runtime again about a container whose process
// /proc does not show: about a second in all. A runtime learns of an exit a moment after it
// happens (from the shim), and says "running" until then.
var exitPatience = []time.Duration{0, 10 * time.Millisecond, 40 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 600 * time.Millisecond}

// askWhileExiting asks again, at most patience times and waiting as exitPatience says, while
// the answer is ErrNoProcess: a container or sandbox whose process /proc no longer shows, which
// its runtime still calls running. If the runtime keeps saying so, the last ErrNoProcess stands.
func askWhileExiting[T any](ctx context.Context, patience int, ask func() (T, error)) (T, error) {
	v, err := ask()
	for attempt := 0; errors.Is(err, ErrNoProcess) && attempt < min(patience, len(exitPatience)); attempt++ {
		t := time.NewTimer(exitPatience[attempt])
		select {
		case <-ctx.Done():
			t.Stop()
			var zero T
			return zero, ctx.Err()
		case <-t.C:
		}
		v, err = ask()
	}
	return v, err
}

// exitPatienceFor is how many times a list asks again about the next invisible process: all of
// exitPatience, unless one process stayed invisible and none was visible (found is 0). Then
// /proc may not be the host's, and each would wait a second in vain: once more only.
func exitPatienceFor(noProcess error, found int) int {
	if noProcess != nil && found == 0 {
		return 1
	}
	return len(exitPatience)
}
