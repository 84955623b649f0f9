// Package containers names network namespaces after the Docker containers that live in them.
//
// It talks to the Docker Engine API (honouring DOCKER_HOST, default unix:///var/run/docker.sock,
// with API version negotiation so that daemons from 20.10 to 29 work), resolves the containers a
// user names on the command line ([Client.Find]), and follows the daemon's event stream
// ([Watcher.Run]) so that containers that start, restart or stop are picked up live: [Names] maps a
// netns inode to the containers in it, and the [Watcher]'s callback receives the netns inodes of the
// containers being traced whenever they change.
//
// A container is tied to a netns through the host PID of its init process: the inode of
// /proc/PID/ns/net. That requires sockscope to run in the host's PID namespace (on the host, or in a
// container with --pid=host).
package containers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// DefaultHost is the daemon address used when neither the caller nor DOCKER_HOST names one.
const DefaultHost = client.DefaultDockerHost

// dialTimeout bounds the first contact with the daemon when the caller's context has no deadline.
const dialTimeout = 10 * time.Second

// Container is what sockscope needs to know about one Docker container.
type Container struct {
	ID     string            // full ID
	Name   string            // without leading "/"
	Image  string            // the image as the user named it (e.g. "nginx:1.27"), not its digest
	Labels map[string]string // container labels (compose project/service, k8s pod, ...)
	Pid    int               // host PID of the init process, 0 if not running
	Netns  uint32            // inode of its network namespace, 0 if not running
}

// ShortID returns the 12-character form of the ID that docker ps shows.
func (c Container) ShortID() string { return shortID(c.ID) }

// Running reports whether the container has a process (and so a network namespace).
func (c Container) Running() bool { return c.Pid > 0 }

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Client is a connection to one Docker daemon. It is safe for concurrent use.
type Client struct {
	api  *client.Client
	host string
}

// Dial connects to the daemon (host "" means DOCKER_HOST or the default socket) and negotiates the
// API version. When the daemon does not answer it returns an error whose message names the socket or
// URL and suggests the fix in one line.
func Dial(ctx context.Context, host string) (*Client, error) {
	opts := []client.Opt{client.FromEnv} // DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	api, err := client.New(opts...)
	if err != nil {
		shown := host
		if shown == "" {
			shown = os.Getenv(client.EnvOverrideHost)
		}
		return nil, fmt.Errorf("docker host %q: %w (set --docker-host or DOCKER_HOST to e.g. %s or tcp://HOST:2375)", shown, err, DefaultHost)
	}
	if u, err := client.ParseHostURL(api.DaemonHost()); err == nil && !supportedScheme(u.Scheme) {
		api.Close()
		if u.Scheme == "ssh" {
			return nil, fmt.Errorf("docker host %s: ssh:// needs the docker CLI's connection helper; forward the socket instead (ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock HOST) and use unix:///tmp/docker.sock", api.DaemonHost())
		}
		return nil, fmt.Errorf("docker host %s: scheme %s:// is not supported (use unix:///PATH or tcp://HOST:PORT)", api.DaemonHost(), u.Scheme)
	}
	c := &Client{api: api, host: api.DaemonHost()}

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dialTimeout)
		defer cancel()
	}
	if _, err := api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		api.Close()
		return nil, c.unreachable(ctx, err)
	}
	return c, nil
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
func (c *Client) unreachable(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("connecting to the Docker daemon at %s: %w", c.host, ctx.Err())
	}
	if ctx.Err() != nil {
		return fmt.Errorf("cannot reach the Docker daemon at %s: no answer in time (is dockerd running and healthy? set --docker-host or DOCKER_HOST)", c.host)
	}
	if !client.IsErrConnectionFailed(err) {
		// The daemon answered, but not as expected (too old an API, a proxy, ...).
		return fmt.Errorf("the Docker daemon at %s: %w", c.host, err)
	}
	cause := err.Error()
	if u, perr := client.ParseHostURL(c.host); perr == nil && (u.Scheme == "unix" || u.Scheme == "tcp") {
		// Dial again ourselves to learn why: the library's message repeats the address and
		// drops the cause for some errors ("connection refused", timeouts).
		var d net.Dialer
		conn, derr := d.DialContext(ctx, u.Scheme, u.Host)
		if derr == nil {
			conn.Close()
		} else {
			cause = derr.Error()
			var op *net.OpError
			if errors.As(derr, &op) && op.Err != nil {
				cause = op.Err.Error() // "connect: no such file or directory"
			}
			if errors.Is(derr, fs.ErrPermission) {
				return fmt.Errorf("cannot reach the Docker daemon at %s: %s (run as root or as a member of the docker group, or set --docker-host or DOCKER_HOST)", c.host, cause)
			}
		}
	}
	return fmt.Errorf("cannot reach the Docker daemon at %s: %s (is dockerd running? set --docker-host or DOCKER_HOST)", c.host, cause)
}

// Close releases the connections to the daemon.
func (c *Client) Close() error { return c.api.Close() }

// Host returns the daemon's address, e.g. unix:///var/run/docker.sock.
func (c *Client) Host() string { return c.host }

// APIVersion returns the API version negotiated with the daemon, e.g. "1.41".
func (c *Client) APIVersion() string { return c.api.ClientVersion() }

// Find resolves a name (with or without leading "/"), a full ID or an ID prefix among all containers,
// running or not, the way docker does: full ID first, then exact name, then unique ID prefix.
func (c *Client) Find(ctx context.Context, query string) (Container, error) {
	q := strings.TrimPrefix(strings.TrimSpace(query), "/")
	if q == "" {
		return Container{}, errors.New("empty container name or ID")
	}
	list, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return Container{}, fmt.Errorf("listing containers at %s: %w", c.host, err)
	}
	all := list.Items

	for _, s := range all {
		if s.ID == q {
			return c.Inspect(ctx, s.ID)
		}
	}
	for _, s := range all {
		for _, n := range s.Names {
			if strings.TrimPrefix(n, "/") == q {
				return c.Inspect(ctx, s.ID)
			}
		}
	}
	var matches []container.Summary
	for _, s := range all {
		if strings.HasPrefix(s.ID, q) {
			matches = append(matches, s)
		}
	}
	switch len(matches) {
	case 1:
		return c.Inspect(ctx, matches[0].ID)
	case 0:
		return Container{}, notFoundError(q, all)
	}
	desc := make([]string, len(matches))
	for i, s := range matches {
		desc[i] = shortID(s.ID) + " (" + summaryName(s) + ")"
	}
	slices.Sort(desc)
	return Container{}, fmt.Errorf("ID prefix %q matches %d containers: %s; give more of the ID or the name", q, len(matches), strings.Join(desc, ", "))
}

// notFoundError suggests the running containers whose names are closest to q.
func notFoundError(q string, all []container.Summary) error {
	var running []string
	for _, s := range all {
		if s.State == container.StateRunning || s.State == container.StatePaused {
			running = append(running, summaryName(s))
		}
	}
	if len(running) == 0 {
		return fmt.Errorf("no container named or with ID prefix %q; no containers are running", q)
	}
	return fmt.Errorf("no container named or with ID prefix %q; running containers: closest are %s", q, strings.Join(Closest(q, running, 3), ", "))
}

// Closest returns up to n of candidates, nearest to q by edit distance first; ties go to names
// that start with or contain q, then alphabetical order.
func Closest(q string, candidates []string, n int) []string {
	type scored struct {
		name string
		d    int
		rel  int // among equal distances: 0 has q as a prefix, 1 contains it, 2 neither
	}
	s := make([]scored, 0, len(candidates))
	for _, c := range candidates {
		rel := 2
		if strings.HasPrefix(c, q) {
			rel = 0
		} else if strings.Contains(c, q) {
			rel = 1
		}
		s = append(s, scored{c, editDistance(q, c), rel})
	}
	slices.SortFunc(s, func(a, b scored) int {
		if a.d != b.d {
			return a.d - b.d
		}
		if a.rel != b.rel {
			return a.rel - b.rel
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]string, 0, n)
	for _, x := range s {
		if len(out) == n {
			break
		}
		if len(out) > 0 && out[len(out)-1] == x.name {
			continue
		}
		out = append(out, x.name)
	}
	return out
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

// Inspect returns one container by ID or name; Pid and Netns are filled when it is running.
func (c *Client) Inspect(ctx context.Context, id string) (Container, error) {
	for attempt := 0; ; attempt++ {
		res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				return Container{}, fmt.Errorf("no container %q: %w", id, ErrNotFound)
			}
			return Container{}, fmt.Errorf("inspecting container %q at %s: %w", id, c.host, err)
		}
		ct := fromInspect(res.Container)
		if ct.Pid == 0 {
			return ct, nil
		}
		ns, err := NetnsInode(ct.Pid)
		if err == nil {
			ct.Netns = ns
			return ct, nil
		}
		// The process may have exited since the daemon answered: ask again once. If the daemon
		// still says it runs, /proc does not show the host's processes.
		if errors.Is(err, fs.ErrNotExist) && attempt == 0 {
			continue
		}
		if errors.Is(err, fs.ErrNotExist) {
			return Container{}, fmt.Errorf("container %s (%s) runs as PID %d, but %w in /proc (is sockscope running in a container without --pid=host?)", ct.Name, ct.ShortID(), ct.Pid, ErrNoProcess)
		}
		return Container{}, fmt.Errorf("container %s (%s): %w", ct.Name, ct.ShortID(), err)
	}
}

// ErrNotFound is wrapped by errors about containers that the daemon does not know (any more).
var ErrNotFound = errors.New("container not found")

// ErrNoProcess means the daemon names a PID for a running container that /proc does not show:
// the container is exiting or restarting, or sockscope does not see the host's PID namespace.
var ErrNoProcess = errors.New("that process is not visible")

func fromInspect(r container.InspectResponse) Container {
	ct := Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/"), Image: r.Image}
	if r.Config != nil {
		if r.Config.Image != "" {
			ct.Image = r.Config.Image
		}
		ct.Labels = r.Config.Labels
	}
	if r.State != nil && r.State.Running && r.State.Pid > 0 {
		ct.Pid = r.State.Pid
	}
	return ct
}

// Running returns the running (and paused) containers, each with its Pid and Netns.
// A container that stops while the list is being made is left out.
func (c *Client) Running(ctx context.Context) ([]Container, error) {
	list, err := c.api.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing containers at %s: %w", c.host, err)
	}
	out := make([]Container, 0, len(list.Items))
	var noProcess error
	for _, s := range list.Items {
		ct, err := c.Inspect(ctx, s.ID)
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
		out = append(out, ct)
	}
	if len(out) == 0 && noProcess != nil {
		return nil, noProcess
	}
	return out, nil
}
