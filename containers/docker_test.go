package containers

// Helpers for the tests that run against the real Docker daemon (start one with: bash .ci/docker.sh).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

const testImage = "sockscope-test/busybox"

// needDocker requires root, the docker CLI, a daemon that answers and the offline test image, and
// returns a client for that daemon.
func needDocker(t *testing.T) *Docker {
	t.Helper()
	testenv.Root(t)
	testenv.Command(t, "docker")
	testenv.DockerSocket(t)
	if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", testImage).CombinedOutput(); err != nil {
		msg := "needs the image " + testImage + " (build it with: bash .ci/docker.sh): " + strings.TrimSpace(string(out))
		if testenv.InCI() {
			t.Fatal("prerequisite missing (CI=true, so this fails instead of skipping): " + msg)
		}
		t.Skip("skipped: " + msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialDocker(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// uniqueName returns "sockscope-test-<suffix>-<random>" so that concurrent runs never collide.
func uniqueName(t *testing.T, suffix string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	return "sockscope-test-" + suffix + "-" + hex.EncodeToString(b)
}

// docker runs the docker CLI and returns its trimmed standard output, failing the test on error.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("docker", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out))
}

// removeAtCleanup removes the container (whatever its state) when the test ends.
func removeAtCleanup(t *testing.T, name string) {
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "rm", "-f", "-v", name).CombinedOutput(); err != nil {
			t.Logf("docker rm -f %s: %v: %s", name, err, out)
		}
	})
}

// runContainer starts a container that sleeps, with extra docker run flags, and returns its full ID.
// Stop and restart it with -t 0: sleep as PID 1 ignores SIGTERM.
func runContainer(t *testing.T, name string, flags ...string) string {
	t.Helper()
	removeAtCleanup(t, name)
	args := append([]string{"run", "-d", "--name", name, "--label", "sockscope.test=1"}, flags...)
	return docker(t, append(args, testImage, "sleep", "3600")...)
}

// createContainer creates a container without starting it and returns its full ID.
func createContainer(t *testing.T, name string) string {
	t.Helper()
	removeAtCleanup(t, name)
	return docker(t, "create", "--name", name, "--label", "sockscope.test=1", testImage, "sleep", "3600")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// changes records every set passed to a Watcher's onChange.
type changes struct {
	mu   sync.Mutex
	sets [][]uint32
}

func (c *changes) record(ns []uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sets = append(c.sets, ns)
}

func (c *changes) last() (set []uint32, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sets) == 0 {
		return nil, 0
	}
	return c.sets[len(c.sets)-1], len(c.sets)
}

// since returns the sets reported after the first n.
func (c *changes) since(n int) [][]uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sets[n:])
}

func (c *changes) lastIs(want ...uint32) bool {
	set, n := c.last()
	return n > 0 && slices.Equal(set, want)
}

// startWatcher syncs a watcher and runs it until the test ends.
func startWatcher(t *testing.T, c Runtime, selected []string) (*Watcher, *changes) {
	t.Helper()
	host, err := HostNetns()
	if err != nil {
		t.Fatal(err)
	}
	ch := &changes{}
	var sels []Selector
	for _, id := range selected {
		sels = append(sels, Selector{ID: id})
	}
	w := NewWatcher([]Runtime{c}, host, sels, ch.record)
	var (
		errMu sync.Mutex
		errs  []error
	)
	w.OnError = func(_ Info, err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.Sync(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Watcher.Run did not return within 5 s of its context being cancelled")
		}
		errMu.Lock()
		defer errMu.Unlock()
		for _, err := range errs {
			t.Errorf("Watcher.OnError: %v", err)
		}
	})
	return w, ch
}
