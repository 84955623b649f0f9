package containers

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

// staleSocket leaves a socket file that nobody listens on: what a crashed runtime leaves behind.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
}

func TestDiscoverUnderAHostRoot(t *testing.T) {
	t.Setenv("DOCKER_HOST", "")
	ctx := context.Background()

	// Nothing there: no runtime, and one warning saying where sockscope looked.
	root := t.TempDir()
	rts, probes, err := Discover(ctx, Options{HostRoot: root})
	if err != nil || len(rts) != 0 || len(probes) != 0 {
		t.Fatalf("empty root: %v, %v, %v", rts, probes, err)
	}
	w := ProbeWarnings(probes, rts, Options{HostRoot: root})
	if len(w) != 1 || !strings.Contains(w[0], "no container runtime answers") || !strings.Contains(w[0], "under "+root) {
		t.Errorf("warnings %q", w)
	}

	// A containerd that crashed and left its socket, and the same socket seen again through
	// var/run (a real directory here, with a link to ../run's socket): probed once, a warning.
	staleSocket(t, filepath.Join(root, "run/containerd/containerd.sock"))
	if err := os.MkdirAll(filepath.Join(root, "var/run/containerd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "run/containerd/containerd.sock"), filepath.Join(root, "var/run/containerd/containerd.sock")); err != nil {
		t.Fatal(err)
	}
	rts, probes, err = Discover(ctx, Options{HostRoot: root, ProbeTimeout: 2 * time.Second})
	if err != nil || len(rts) != 0 {
		t.Fatalf("stale socket: %v, %v", rts, err)
	}
	if len(probes) != 1 || probes[0].Endpoint != "unix://"+filepath.Join(root, "run/containerd/containerd.sock") || probes[0].Err == nil {
		t.Fatalf("probes %+v, want one failed probe of run/containerd/containerd.sock", probes)
	}
	w = ProbeWarnings(probes, rts, Options{HostRoot: root})
	if len(w) != 2 || !strings.Contains(w[0], filepath.Join(root, "run/containerd/containerd.sock")) || strings.Contains(w[0], "\n") {
		t.Errorf("warnings %q: want one line naming the socket, then none answers", w)
	}

	// var/run as a link (the usual case) is not followed: it would leave the host root.
	root2 := t.TempDir()
	if err := os.Symlink("/run", filepath.Join(root2, "var")); err != nil {
		t.Fatal(err)
	}
	if got := probeList(root2); len(got) != 0 {
		t.Errorf("probes through a var link out of the root: %+v", got)
	}
}

func TestDiscoverNamedEndpointsMustAnswer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, c := range []struct {
		opts Options
		want []string
	}{
		{Options{Endpoints: []string{"unix://" + dir + "/missing.sock"}}, []string{dir + "/missing.sock", "no such file"}},
		{Options{Endpoints: []string{"relative.sock"}}, []string{`"relative.sock"`, "unix:///PATH"}},
		{Options{Endpoints: []string{"none", "unix:///x"}}, []string{`"none" turns naming off`}},
		{Options{DockerHost: "unix://" + dir + "/docker.sock"}, []string{"cannot reach the Docker daemon at unix://" + dir + "/docker.sock"}},
	} {
		_, _, err := Discover(ctx, c.opts)
		if err == nil {
			t.Errorf("%+v: no error", c.opts)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%+v: error %q, want one line containing %q", c.opts, err, w)
			}
		}
	}
	staleSocket(t, dir+"/stale.sock")
	_, _, err := Discover(ctx, Options{Endpoints: []string{dir + "/stale.sock"}, ProbeTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "CRI endpoint unix://"+dir+"/stale.sock: cannot connect") {
		t.Errorf("stale socket: %v", err)
	}

	rts, probes, err := Discover(ctx, Options{Endpoints: []string{NoRuntimes}})
	if err != nil || len(rts) != 0 || len(probes) != 0 || len(ProbeWarnings(probes, rts, Options{Endpoints: []string{NoRuntimes}})) != 0 {
		t.Errorf("none: %v, %v, %v", rts, probes, err)
	}
}

// TestDockersOwnContainerdIsRecognised: Docker starts its own containerd with the CRI plugin
// disabled. Named, it is an error that says so; probed next to Docker, it is no warning at all.
func TestDockersOwnContainerdIsRecognised(t *testing.T) {
	testenv.Root(t)
	testenv.DockerSocket(t)
	const sock = "/var/run/docker/containerd/containerd.sock"
	if _, err := os.Stat(sock); err != nil {
		if testenv.InCI() {
			t.Fatalf("dockerd runs without its own containerd (%v); .ci/docker.sh starts it that way", err)
		}
		t.Skipf("skipped: dockerd runs without its own containerd at %s", sock)
	}
	_, _, err := Discover(context.Background(), Options{Endpoints: []string{"unix://" + sock}})
	if !errors.Is(err, ErrCRIDisabled) {
		t.Fatalf("Discover(%s) = %v, want ErrCRIDisabled", sock, err)
	}
	for _, w := range []string{"unix://" + sock, "containerd 1.", "CRI plugin is disabled", "Docker"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}

	d, err := DialDocker(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	probes := []Probe{{Endpoint: "unix://" + sock, Kind: "containerd", Err: err}}
	probes[0].Err = errors.Join(errors.New("x"), ErrCRIDisabled)
	if w := ProbeWarnings(probes, []Runtime{d}, Options{}); len(w) != 0 {
		t.Errorf("warnings next to Docker: %q", w)
	}
	if w := ProbeWarnings(probes, nil, Options{}); len(w) != 2 {
		t.Errorf("warnings without Docker: %q, want the CRI-disabled one and none-answers", w)
	}
}

// TestDiscoverTellsDockerFromCRI: an endpoint named without its kind is asked what it is.
func TestDiscoverTellsDockerFromCRI(t *testing.T) {
	testenv.Root(t)
	sock := testenv.DockerSocket(t)
	rts, _, err := Discover(context.Background(), Options{Endpoints: []string{sock}})
	if err != nil {
		t.Fatal(err)
	}
	defer rts[0].Close()
	if len(rts) != 1 || rts[0].Info().Kind != "docker" || rts[0].Info().Endpoint != "unix://"+sock {
		t.Errorf("Discover(%s) = %+v", sock, rts[0].Info())
	}
}

// sockscope version says, per endpoint, why a runtime is not used, and what it means when none
// was found.
func TestWriteProbesSaysWhyEachRuntimeIsNotUsed(t *testing.T) {
	for _, tc := range []struct {
		probes []Probe
		opts   Options
		want   string
	}{
		{[]Probe{{Endpoint: "unix:///run/containerd/containerd.sock", Kind: "containerd", Err: errors.New("connection refused")},
			{Endpoint: "unix:///run/x.sock", Explicit: true, Err: errors.New("no such file")}}, Options{},
			"  containerd   unix:///run/containerd/containerd.sock (probed): not used: connection refused\n" +
				"  runtime      unix:///run/x.sock (given): not used: no such file\n"},
		{nil, Options{Endpoints: []string{NoRuntimes}}, "  none (--runtime-endpoint none): namespaces show their inodes\n"},
		{nil, Options{}, "  none found at the well-known sockets: namespaces show their inodes (name one with --runtime-endpoint)\n"},
	} {
		var b bytes.Buffer
		WriteProbes(&b, tc.probes, tc.opts)
		if b.String() != tc.want {
			t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
		}
	}
}
