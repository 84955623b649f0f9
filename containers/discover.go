package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NoRuntimes, as the only endpoint, turns naming off: namespaces show their inodes.
const NoRuntimes = "none"

// Options says where the runtimes are.
type Options struct {
	// Endpoints are the runtimes the user named (--runtime-endpoint, else
	// CONTAINER_RUNTIME_ENDPOINT): unix:///PATH or a bare path for a CRI runtime or a
	// Docker-compatible socket (told apart by asking), tcp://HOST:PORT for a Docker engine. When
	// set, nothing is probed, and each must answer. NoRuntimes alone means none.
	Endpoints []string
	// DockerHost is a Docker engine the user named (--docker-host); it must answer. Empty: the
	// probe looks at DOCKER_HOST, or the default socket.
	DockerHost string
	// HostRoot prefixes every probed path: the host's / as a container mounts it (--host-root).
	HostRoot string
	// ProbeTimeout bounds each probe; 0 means 2 s.
	ProbeTimeout time.Duration
}

// Probe is what was found at one place a runtime may listen: a runtime that answered, or why none
// did.
type Probe struct {
	Endpoint string
	Kind     string // what is expected there: docker, podman, containerd, cri-o, cri-dockerd, or "" when told by asking
	Explicit bool   // named by the user rather than probed
	Runtime  Runtime
	Err      error
}

// wellKnown are the places runtimes listen by default, probed in this order when no endpoint is
// named. /var/run is /run on current distributions; both are tried, because a container that
// mounts the host's /run somewhere sees only that.
var wellKnown = []struct{ kind, path string }{
	{"docker", "/run/docker.sock"},
	{"podman", "/run/podman/podman.sock"},
	{"containerd", "/run/containerd/containerd.sock"},
	{"containerd", "/run/k3s/containerd/containerd.sock"}, // k3s and rke2
	{"containerd", "/var/snap/microk8s/common/run/containerd.sock"},
	{"containerd", "/run/k0s/containerd.sock"},
	{"cri-o", "/run/crio/crio.sock"},
	{"cri-dockerd", "/run/cri-dockerd.sock"},
}

// rootlessPodman is where each user's podman listens (rootless podman runs one socket per user).
const rootlessPodman = "/run/user/*/podman/podman.sock"

// Discover connects to the runtimes: those named in opts, or every one that answers at a
// well-known place. A named runtime that does not answer, does not speak CRI or Docker's API, or
// has CRI disabled is an error (one line naming the socket). A probed one that fails is returned as
// a Probe with Err, for a warning, and the others go on. The probes list every place looked at
// where something was found, for `sockscope version`.
func Discover(ctx context.Context, opts Options) (rts []Runtime, probes []Probe, err error) {
	timeout := opts.ProbeTimeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	var todo []Probe
	switch {
	case len(opts.Endpoints) == 1 && opts.Endpoints[0] == NoRuntimes:
		return nil, nil, nil
	case len(opts.Endpoints) > 0 || opts.DockerHost != "":
		for _, e := range opts.Endpoints {
			if e == NoRuntimes {
				return nil, nil, errors.New("runtime endpoint \"none\" turns naming off: give it alone")
			}
			todo = append(todo, Probe{Endpoint: e, Explicit: true})
		}
		if opts.DockerHost != "" {
			todo = append(todo, Probe{Endpoint: opts.DockerHost, Kind: "docker", Explicit: true})
		}
	default:
		todo = probeList(opts.HostRoot)
	}

	results := make([]Probe, len(todo))
	var wg sync.WaitGroup
	for i, p := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			p.Runtime, p.Err = open(pctx, p, opts.HostRoot)
			results[i] = p
		}()
	}
	wg.Wait()

	var errs []error
	for _, p := range results {
		if p.Err != nil && p.Explicit {
			errs = append(errs, p.Err)
		}
		if p.Runtime != nil {
			rts = append(rts, p.Runtime)
		}
	}
	if len(errs) > 0 {
		for _, rt := range rts {
			rt.Close()
		}
		return nil, results, errors.Join(errs...)
	}
	return rts, results, nil
}

// probeList is every well-known socket that exists (under root), each file once: /var/run is
// usually a link to /run, and podman-docker links docker.sock to podman's socket.
func probeList(root string) []Probe {
	var out []Probe
	seen := map[[2]uint64]bool{}
	add := func(kind, path string) {
		var st syscall.Stat_t
		if syscall.Stat(path, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
			return
		}
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if seen[key] {
			return
		}
		seen[key] = true
		out = append(out, Probe{Endpoint: "unix://" + path, Kind: kind})
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" && root == "" {
		// The user's Docker, wherever it is; probed, so a failure only warns.
		out = append(out, Probe{Endpoint: h, Kind: "docker"})
		if strings.HasPrefix(h, "unix://") {
			var st syscall.Stat_t
			if syscall.Stat(strings.TrimPrefix(h, "unix://"), &st) == nil {
				seen[[2]uint64{uint64(st.Dev), st.Ino}] = true
			}
		}
	}
	// Under a host root, /var/run is usually an absolute link to /run, which would resolve
	// against sockscope's own root: follow it only when it is a real directory there.
	varRun := true
	if root != "" {
		st, err := os.Lstat(filepath.Join(root, "var/run"))
		varRun = err == nil && st.IsDir()
	}
	for _, w := range wellKnown {
		add(w.kind, filepath.Join(root, w.path))
		if strings.HasPrefix(w.path, "/run/") && varRun {
			add(w.kind, filepath.Join(root, "/var"+w.path))
		}
	}
	users, _ := filepath.Glob(filepath.Join(root, rootlessPodman))
	slices.Sort(users)
	for _, p := range users {
		add("podman", p)
	}
	return out
}

// open connects to one endpoint: with the protocol its kind speaks, or, for an endpoint the
// user named without saying what it is, CRI first and then Docker's API.
func open(ctx context.Context, p Probe, hostRoot string) (Runtime, error) {
	switch p.Kind {
	case "docker", "podman":
		d, err := DialDocker(ctx, dockerURL(p.Endpoint))
		if err != nil {
			return nil, err
		}
		return d, nil
	case "":
		if strings.HasSuffix(p.Endpoint, "/docker.sock") || strings.HasSuffix(p.Endpoint, "/podman.sock") {
			// Named like an engine's socket: ask Docker's API first (a gRPC attempt on it
			// costs a connection backoff).
			if d, err := DialDocker(ctx, dockerURL(p.Endpoint)); err == nil {
				return d, nil
			}
		}
		if !strings.HasPrefix(p.Endpoint, "tcp://") && !strings.HasPrefix(p.Endpoint, "http") {
			c, err := DialCRI(ctx, p.Endpoint, hostRoot)
			if err == nil {
				return c, nil
			}
			if errors.Is(err, ErrCRIDisabled) {
				return nil, err
			}
			// Not CRI: perhaps Docker's API, or podman's (which close a gRPC connection at
			// once, which reads like a runtime that went away).
			if d, derr := DialDocker(ctx, dockerURL(p.Endpoint)); derr == nil {
				return d, nil
			}
			return nil, err
		}
		return DialDocker(ctx, p.Endpoint)
	}
	c, err := DialCRI(ctx, p.Endpoint, hostRoot)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// dockerURL writes a bare socket path the way Docker's client wants it.
func dockerURL(e string) string {
	if strings.HasPrefix(e, "/") {
		return "unix://" + e
	}
	return e
}

// WriteProbes lists what Discover found at each endpoint it tried, one per line, as `sockscope
// version` shows them: the runtime and its version, or why it is not used.
func WriteProbes(w io.Writer, probes []Probe, opts Options) {
	for _, p := range probes {
		how := "probed"
		if p.Explicit {
			how = "given"
		}
		if p.Err != nil {
			kind := p.Kind
			if kind == "" {
				kind = "runtime"
			}
			fmt.Fprintf(w, "  %-12s %s (%s): not used: %v\n", kind, p.Endpoint, how, p.Err)
			continue
		}
		i := p.Runtime.Info()
		fmt.Fprintf(w, "  %-12s %s (%s): %s\n", i.Kind, i.Endpoint, how, i.Version)
	}
	if len(probes) == 0 {
		if len(opts.Endpoints) == 1 && opts.Endpoints[0] == NoRuntimes {
			fmt.Fprintln(w, "  none (--runtime-endpoint none): namespaces show their inodes")
		} else {
			fmt.Fprintln(w, "  none found at the well-known sockets: namespaces show their inodes (name one with --runtime-endpoint)")
		}
	}
}
