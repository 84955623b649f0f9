package main

import (
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

const (
	podmanSocket = "/run/podman/podman.sock"
	podmanImage  = "localhost/sockscope-test/busybox:latest"
)

// requirePodman requires tracing, the podman CLI, rootful podman's Docker-compatible socket and
// the offline test image (start them with: bash .ci/podman.sh).
func requirePodman(t *testing.T) {
	t.Helper()
	requireTracing(t)
	testenv.Command(t, "podman")
	miss := func(msg string) {
		msg += " (start it with: bash .ci/podman.sh)"
		if testenv.InCI() {
			t.Fatal("prerequisite missing (CI=true, so this fails instead of skipping): " + msg)
		}
		t.Skip("skipped: " + msg)
	}
	c, err := net.DialTimeout("unix", podmanSocket, 2*time.Second)
	if err != nil {
		miss("needs podman's API socket at " + podmanSocket + ": " + err.Error())
		return
	}
	c.Close()
	if out, err := exec.Command("podman", "image", "exists", podmanImage).CombinedOutput(); err != nil {
		miss("needs the image " + podmanImage + ": " + strings.TrimSpace(string(out)))
	}
}

// podman's Docker-compatible API differs from Docker's where it matters to sockscope: its exit
// events match a "died" filter, not "die", and carry containerExitCode. A podman container is
// named in live events and in a recording, and its exit code is recorded.
func TestPodmanContainersAreNamedAndTheirExitCodeRecorded(t *testing.T) {
	requirePodman(t)
	const n = 4
	ep := "unix://" + podmanSocket
	tr := startTrace(t, "--runtime-endpoint", ep)
	rec, file := startRecord(t, "--runtime-endpoint", ep)
	name := containerName("podman")
	t.Cleanup(func() { exec.Command("podman", "rm", "-f", name).Run() })
	script := "httpd -p 127.0.0.1:8080 -h /www && sleep 0.3 && " +
		"for i in $(seq 4); do wget -q -O- http://127.0.0.1:8080/ || exit 1; done && sleep 1 && exit 3"
	sh(t, "podman", "run", "-d", "--name", name, podmanImage, "sh", "-c", script)
	if out := strings.TrimSpace(sh(t, "podman", "wait", name)); out != "3" {
		t.Fatalf("podman wait %s: exit code %q, want 3 (logs: %s)", name, out, sh(t, "podman", "logs", name))
	}
	id := strings.TrimSpace(sh(t, "podman", "inspect", "-f", "{{.Id}}", name))
	time.Sleep(time.Second) // the exit event
	evs, _ := tr.stop(t)
	stopRecord(t, rec)

	if got := successes(evs, func(e jsonEvent) bool { return e.Container == name }); got != n {
		t.Errorf("connects named %s: %d, want %d", name, got, n)
	}
	for _, e := range evs {
		if e.Dport == 8080 && e.Container != name {
			t.Errorf("the podman container's event not named %s: %+v", name, e)
		}
	}
	var report struct {
		Targets []struct {
			Name, ID string
			Stopped  time.Time
			ExitCode int
		}
	}
	out := runSockscope(t, "report", file, "-o", "json", "--container", name)
	if err := json.Unmarshal([]byte(out.stdout), &report); err != nil {
		t.Fatalf("report -o json: %v\n%s", err, out.stderr)
	}
	if len(report.Targets) != 1 || report.Targets[0].Name != name || report.Targets[0].ID != id[:12] ||
		report.Targets[0].ExitCode != 3 || report.Targets[0].Stopped.IsZero() {
		t.Errorf("report of %s: %+v, want it named, stopped with exit code 3", name, report.Targets)
	}
}
