package containers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// DefaultDockerHost is the Docker daemon address used when neither the caller nor DOCKER_HOST
// names one.
const DefaultDockerHost = client.DefaultDockerHost

// dialTimeout bounds the first contact with a runtime when the caller's context has no deadline.
const dialTimeout = 10 * time.Second

// Docker is a connection to one Docker-compatible engine: Docker itself or podman's Docker API
// socket. It is safe for concurrent use.
type Docker struct {
	api     *client.Client
	host    string
	kind    string // docker or podman
	version string

	mu    sync.Mutex
	known map[string]Container // running containers already inspected, by ID
}

// DialDocker connects to a Docker-compatible engine (host "" means DOCKER_HOST or the default
// socket) and negotiates the API version. When the engine does not answer it returns an error
// whose message names the socket or URL and suggests the fix in one line.
func DialDocker(ctx context.Context, host string) (*Docker, error) {
	// The engine says what it is in every answer's Server header ("Docker/20.10.24 (linux)",
	// "Libpod/4.3.1 (linux)"): read it from the ping, because podman's /version takes 400 ms.
	var server atomic.Pointer[string]
	opts := []client.Opt{client.FromEnv, // DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY
		client.WithHTTPResponseHook(func(r *http.Response) {
			if v := r.Header.Get("Server"); v != "" && server.Load() == nil {
				server.Store(&v)
			}
		})}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	api, err := client.New(opts...)
	if err != nil {
		shown := host
		if shown == "" {
			shown = os.Getenv(client.EnvOverrideHost)
		}
		return nil, fmt.Errorf("docker host %q: %w (set --docker-host or DOCKER_HOST to e.g. %s or tcp://HOST:2375)", shown, err, DefaultDockerHost)
	}
	if u, err := client.ParseHostURL(api.DaemonHost()); err == nil && !supportedScheme(u.Scheme) {
		api.Close()
		if u.Scheme == "ssh" {
			return nil, fmt.Errorf("docker host %s: ssh:// needs the docker CLI's connection helper; forward the socket instead (ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock HOST) and use unix:///tmp/docker.sock", api.DaemonHost())
		}
		return nil, fmt.Errorf("docker host %s: scheme %s:// is not supported (use unix:///PATH or tcp://HOST:PORT)", api.DaemonHost(), u.Scheme)
	}
	d := &Docker{api: api, host: api.DaemonHost(), kind: "docker", known: map[string]Container{}}

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dialTimeout)
		defer cancel()
	}
	if _, err := api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		api.Close()
		return nil, d.unreachable(ctx, err)
	}
	d.version = "API " + api.ClientVersion()
	if p := server.Load(); p != nil {
		product, rest, _ := strings.Cut(*p, "/")
		if strings.EqualFold(product, "Libpod") {
			d.kind = "podman"
		}
		if v, _, _ := strings.Cut(rest, " "); v != "" {
			d.version = v + " (API " + api.ClientVersion() + ")"
		}
	}
	return d, nil
}

func supportedScheme(s string) bool {
	switch s {
	case "unix", "tcp", "http", "https", "npipe":
		return true
	}
	return false
}

// unreachable turns a failed ping into a one-line error naming the daemon address, the real cause
// (the client library's message repeats the address and, for "connection refused", drops the
// cause) and the fix.
func (d *Docker) unreachable(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("connecting to the Docker daemon at %s: %w", d.host, ctx.Err())
	}
	if ctx.Err() != nil {
		return fmt.Errorf("cannot reach the Docker daemon at %s: no answer in time (is dockerd running and healthy? set --docker-host or DOCKER_HOST)", d.host)
	}
	if !client.IsErrConnectionFailed(err) {
		// The daemon answered, but not as expected (too old an API, a proxy, ...).
		return fmt.Errorf("the Docker daemon at %s: %w", d.host, err)
	}
	cause := err.Error()
	if u, perr := client.ParseHostURL(d.host); perr == nil && (u.Scheme == "unix" || u.Scheme == "tcp") {
		// Dial again ourselves to learn why: the library's message repeats the address and
		// drops the cause for some errors ("connection refused", timeouts).
		var dl net.Dialer
		conn, derr := dl.DialContext(ctx, u.Scheme, u.Host)
		if derr == nil {
			conn.Close()
		} else {
			cause = dialCause(derr)
			if errors.Is(derr, fs.ErrPermission) {
				return fmt.Errorf("cannot reach the Docker daemon at %s: %s (run as root or as a member of the docker group, or set --docker-host or DOCKER_HOST)", d.host, cause)
			}
		}
	}
	return fmt.Errorf("cannot reach the Docker daemon at %s: %s (is dockerd running? set --docker-host or DOCKER_HOST)", d.host, cause)
}

// dialCause is the reason a dial failed without the address the caller names already:
// "connect: no such file or directory".
func dialCause(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// Close releases the connections to the daemon.
func (d *Docker) Close() error { return d.api.Close() }

// Host returns the daemon's address, e.g. unix:///var/run/docker.sock.
func (d *Docker) Host() string { return d.host }

// Info says which engine this is.
func (d *Docker) Info() Info { return Info{Kind: d.kind, Endpoint: d.host, Version: d.version} }

// Inspect returns one container by ID or name; Pid and Netns are filled when it is running.
func (d *Docker) Inspect(ctx context.Context, id string) (Container, error) {
	return askWhileExiting(ctx, len(exitPatience), func() (Container, error) { return d.inspectOnce(ctx, id) })
}

// inspectOnce is one question to the daemon; ErrNoProcess when /proc does not show the PID it
// names (the container is exiting, or /proc is not the host's: askWhileExiting tells them apart).
func (d *Docker) inspectOnce(ctx context.Context, id string) (Container, error) {
	res, err := d.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return Container{}, fmt.Errorf("no container %q: %w", id, ErrNotFound)
		}
		return Container{}, fmt.Errorf("inspecting container %q at %s: %w", id, d.host, err)
	}
	ct := d.fromInspect(res.Container)
	if ct.Pid == 0 {
		return ct, nil
	}
	ns, err := NetnsInode(ct.Pid)
	if errors.Is(err, fs.ErrNotExist) {
		return Container{}, fmt.Errorf("container %s (%s) runs as PID %d, but %w in /proc (is sockscope running in a container without --pid=host?)", ct.Name, ct.ShortID(), ct.Pid, ErrNoProcess)
	}
	if err != nil {
		return Container{}, fmt.Errorf("container %s (%s): %w", ct.Name, ct.ShortID(), err)
	}
	ct.Netns, ct.NetnsPath = ns, procNetns(ct.Pid)
	return ct, nil
}

func (d *Docker) fromInspect(r container.InspectResponse) Container {
	ct := Container{Runtime: d.kind, ID: r.ID, Name: strings.TrimPrefix(r.Name, "/"), Image: r.Image}
	if r.Config != nil {
		if r.Config.Image != "" {
			ct.Image = r.Config.Image
		}
		ct.Labels = r.Config.Labels
	}
	if r.State != nil && r.State.Running && r.State.Pid > 0 {
		ct.Pid = r.State.Pid
		ct.Up = true
	}
	ct.podFromLabels()
	return ct
}

// Running returns the running (and paused) containers, each with its Pid and Netns. A container
// already inspected is inspected again only when it was renamed or restarted.
func (d *Docker) Running(ctx context.Context) ([]Container, error) {
	list, err := d.api.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing containers at %s: %w", d.host, err)
	}
	out := make([]Container, 0, len(list.Items))
	seen := make(map[string]bool, len(list.Items))
	var noProcess error
	for _, s := range list.Items {
		seen[s.ID] = true
		if ct, ok := d.cached(s); ok {
			out = append(out, ct)
			continue
		}
		ct, err := askWhileExiting(ctx, exitPatienceFor(noProcess, len(out)), func() (Container, error) { return d.inspectOnce(ctx, s.ID) })
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if errors.Is(err, ErrNoProcess) {
			// Exiting or restarting meanwhile: the event stream brings it back if it starts.
			// If no container at all shows a process, /proc is not the host's: say so.
			noProcess = err
			continue
		}
		if err != nil {
			return nil, err
		}
		if ct.Pid == 0 {
			continue // stopped meanwhile
		}
		d.mu.Lock()
		d.known[ct.ID] = ct
		d.mu.Unlock()
		out = append(out, ct)
	}
	d.mu.Lock()
	for id := range d.known {
		if !seen[id] {
			delete(d.known, id)
		}
	}
	d.mu.Unlock()
	if len(out) == 0 && noProcess != nil {
		return nil, noProcess
	}
	return out, nil
}

// cached returns the container as last inspected, if it still runs as then: same name, and its
// process still in the same namespace (a restart missed while the event stream was down changes
// both the process and the namespace).
func (d *Docker) cached(s container.Summary) (Container, bool) {
	d.mu.Lock()
	ct, ok := d.known[s.ID]
	d.mu.Unlock()
	if !ok || !slicesContainsName(s.Names, ct.Name) && ct.Pod.IsZero() {
		return Container{}, false
	}
	if ns, err := NetnsInodeOfPath(ct.NetnsPath); err != nil || ns != ct.Netns {
		return Container{}, false
	}
	return ct, true
}

func slicesContainsName(names []string, name string) bool {
	for _, n := range names {
		if strings.TrimPrefix(n, "/") == name {
			return true
		}
	}
	return false
}

// All returns every container, running or not, from one list call.
func (d *Docker) All(ctx context.Context) ([]Container, error) {
	list, err := d.api.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("listing containers at %s: %w", d.host, err)
	}
	out := make([]Container, 0, len(list.Items))
	for _, s := range list.Items {
		ct := Container{Runtime: d.kind, ID: s.ID, Name: summaryName(s), Image: s.Image, Labels: s.Labels,
			Up: s.State == container.StateRunning || s.State == container.StatePaused}
		ct.podFromLabels()
		out = append(out, ct)
	}
	return out, nil
}

func summaryName(s container.Summary) string {
	if len(s.Names) == 0 {
		return shortID(s.ID)
	}
	// Legacy links add names such as "/other/alias"; the container's own name has one slash.
	for _, n := range s.Names {
		if strings.Count(n, "/") == 1 {
			return strings.TrimPrefix(n, "/")
		}
	}
	return strings.TrimPrefix(s.Names[0], "/")
}

// Watch follows the engine's container events. podman differs from Docker: it sends "died"
// instead of "die" and "containerExitCode" instead of "exitCode", and older versions ignore the
// filters, so every message is checked here whatever was asked for.
func (d *Docker) Watch(ctx context.Context, notify func(Event)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the client's reader goroutine

	f := client.Filters{}.
		Add("type", string(events.ContainerEventType)).
		Add("event",
			string(events.ActionStart), string(events.ActionRestart), string(events.ActionRename),
			string(events.ActionDie), string(events.ActionStop), string(events.ActionDestroy),
			// podman 4.3 matches its die and remove events only by these names.
			"died", "remove")
	ev := d.api.Events(ctx, client.EventsListOptions{Filters: f})
	// Subscribed (or failed, which the first receive shows): let the owner list now so that nothing
	// between its last list and the subscription is missed. Events that arrive meanwhile wait.
	select {
	case err := <-ev.Err:
		return streamErr(err)
	default:
	}
	notify(Event{})
	for {
		select {
		case m := <-ev.Messages:
			if e, ok := d.event(m); ok {
				notify(e)
			}
		case err := <-ev.Err:
			return streamErr(err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (d *Docker) event(m events.Message) (Event, bool) {
	if m.Type != events.ContainerEventType || m.Actor.ID == "" {
		return Event{}, false
	}
	id := m.Actor.ID
	var at time.Time
	if m.TimeNano != 0 {
		at = time.Unix(0, m.TimeNano)
	}
	switch m.Action {
	case events.ActionStart, events.ActionRestart, events.ActionRename:
		d.forget(id)
		return Event{Changed: id, At: at}, true
	case events.ActionDie, "died":
		d.forget(id)
		code := m.Actor.Attributes["exitCode"]
		if code == "" {
			code = m.Actor.Attributes["containerExitCode"]
		}
		n, _ := strconv.Atoi(code)
		return Event{Stopped: id, ExitCode: n, At: at, Name: m.Actor.Attributes["name"], Image: m.Actor.Attributes["image"]}, true
	case events.ActionStop, events.ActionDestroy, "remove":
		d.forget(id)
		return Event{}, true
	}
	return Event{}, false
}

func (d *Docker) forget(id string) {
	d.mu.Lock()
	delete(d.known, id)
	d.mu.Unlock()
}

func streamErr(err error) error {
	if err == nil {
		return errors.New("event stream closed")
	}
	return err
}
