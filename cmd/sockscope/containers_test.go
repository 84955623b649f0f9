package main

// End-to-end tests of container naming and following: the real binary, the real kernel and the
// real Docker daemon (start one with: bash .ci/docker.sh). Every container has only loopback
// (dockerd runs with --bridge=none), and all traffic stays on it.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

const testImage = "sockscope-test/busybox"

// requireDocker requires what requireTracing does plus the docker CLI, a daemon that answers and
// the offline test image.
func requireDocker(t *testing.T) {
	t.Helper()
	requireTracing(t)
	testenv.Command(t, "docker")
	testenv.DockerSocket(t)
	if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", testImage).CombinedOutput(); err != nil {
		msg := "needs the image " + testImage + " (build it with: bash .ci/docker.sh): " + strings.TrimSpace(string(out))
		if testenv.InCI() {
			t.Fatal("prerequisite missing (CI=true, so this fails instead of skipping): " + msg)
		}
		t.Skip("skipped: " + msg)
	}
}

// containerName returns "sockscope-test-ROLE-RANDOM", unique across concurrent runs.
func containerName(role string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "sockscope-test-" + role + "-" + hex.EncodeToString(b)
}

// container is a Docker container the test created; it is removed at cleanup.
type container struct {
	name string
	id   string
}

func (c container) shortID() string { return c.id[:12] }

// newContainer runs `docker VERB... --name NAME ARGS...` (VERB being run -d or create).
func newContainer(t *testing.T, verb []string, name string, args ...string) container {
	t.Helper()
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	sh(t, "docker", append(append(slices.Clone(verb), "--name", name), args...)...)
	id := strings.TrimSpace(sh(t, "docker", "inspect", "-f", "{{.Id}}", name))
	if len(id) != 64 {
		t.Fatalf("docker inspect %s: unexpected ID %q", name, id)
	}
	return container{name: name, id: id}
}

var httpdCmd = []string{testImage, "httpd", "-f", "-p", "8080", "-h", "/www"}

// runHTTPD starts a container serving on port 8080 and waits until it listens.
func runHTTPD(t *testing.T, role string, extra ...string) container {
	t.Helper()
	c := newContainer(t, append([]string{"run", "-d"}, extra...), containerName(role), httpdCmd...)
	c.waitListening(t, 8080)
	return c
}

// pid returns the host PID of the container's init process; 0 when it is not running.
func (c container) pid(t *testing.T) int {
	t.Helper()
	s := strings.TrimSpace(sh(t, "docker", "inspect", "-f", "{{.State.Pid}}", c.name))
	pid, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("docker inspect %s: PID %q", c.name, s)
	}
	return pid
}

// netnsInode returns the inode of the running container's network namespace.
func (c container) netnsInode(t *testing.T) uint32 {
	t.Helper()
	pid := c.pid(t)
	if pid == 0 {
		t.Fatalf("container %s is not running", c.name)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// waitListening waits until a TCP socket listens on port in the container's netns. It reads
// /proc/PID/net/tcp{,6} from the host, so that waiting makes no traffic sockscope could see.
func (c container) waitListening(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if pid := c.pid(t); pid != 0 && listens(pid, port) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s did not listen on port %d within 15s", c.name, port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitTimeWait waits until n TCP sockets are in TIME_WAIT in the container's netns, read from
// /proc/PID/net/tcp{,6} like waitListening. A client that closes first reaches TIME_WAIT only
// when its server has closed too, which a loaded machine may delay past a snapshot or two.
func (c container) waitTimeWait(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := procTCPCount(c.pid(t), func(local, state string) bool { return state == "06" }) // TCP_TIME_WAIT
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: %d sockets in TIME_WAIT after 15s, want %d", c.name, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listens reports whether a TCP socket listens on port in pid's network namespace, read from
// /proc/PID/net/tcp{,6}, so that asking makes no traffic sockscope could see.
func listens(pid, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	return procTCPCount(pid, func(local, state string) bool {
		return strings.HasSuffix(local, want) && state == "0A" // TCP_LISTEN
	}) > 0
}

// procTCPCount counts the sockets of /proc/PID/net/tcp{,6} whose local address (hex IP:PORT)
// and state (hex TCP_*) match.
func procTCPCount(pid int, match func(local, state string) bool) int {
	n := 0
	for _, f := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		for _, line := range strings.Split(string(b), "\n") {
			if fs := strings.Fields(line); len(fs) > 3 && match(fs[1], fs[3]) {
				n++
			}
		}
	}
	return n
}

// wgets fetches http://127.0.0.1:8080/ n times from inside the container, one wget process each.
func (c container) wgets(n int) error {
	script := fmt.Sprintf("for i in $(seq %d); do wget -q -O- http://127.0.0.1:8080/ || exit 1; done", n)
	out, err := exec.Command("docker", "exec", c.name, "sh", "-c", script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker exec %s wget: %v\n%s", c.name, err, out)
	}
	if got := strings.Count(string(out), "ok\n"); got != n {
		return fmt.Errorf("docker exec %s wget: %d answers, want %d:\n%s", c.name, got, n, out)
	}
	return nil
}

func (c container) wget(t *testing.T, n int) {
	t.Helper()
	if err := c.wgets(n); err != nil {
		t.Fatal(err)
	}
}

// probe makes one connect to a closed port (9) inside the container: an ECONNREFUSED connect
// event that tells the test sockscope follows the container, without touching port 8080.
func (c container) probe() {
	// (No -T: busybox-static's wget crashes with it. A refused connect returns at once anyway.)
	exec.Command("docker", "exec", c.name, "wget", "-q", "-O-", "http://127.0.0.1:9/").Run()
}

// liveOutput is a trace's standard output that the test can read while sockscope runs.
type liveOutput struct{ *lockedBuffer }

// count returns how many complete JSON lines written so far match.
func (l *liveOutput) count(t *testing.T, match func(jsonEvent) bool) int {
	t.Helper()
	data := l.bytes()
	n := 0
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break // a line still being written
		}
		var e jsonEvent
		if err := json.Unmarshal(data[:i], &e); err != nil {
			t.Fatalf("bad JSON line %q: %v", data[:i], err)
		}
		if match(e) {
			n++
		}
		data = data[i+1:]
	}
	return n
}

// startLiveTrace is startTrace with an output the test can read before the trace stops.
func startLiveTrace(t *testing.T, args ...string) (*tracer, *liveOutput) {
	t.Helper()
	var live *liveOutput
	tr := startTraceTo(t, func(b *bytes.Buffer) io.Writer {
		// Not an *os.File: Wait returns only once everything is copied.
		live = &liveOutput{&lockedBuffer{buf: b}}
		return live
	}, args...)
	return tr, live
}

// waitFollowed probes c until sockscope prints a probe event named for it in netns ns: from then
// on its traffic is traced and named. Waiting on the probe's own event makes no fixed delay part
// of what the test asserts.
func waitFollowed(t *testing.T, live *liveOutput, c container, ns uint32) {
	t.Helper()
	match := func(e jsonEvent) bool {
		return e.Type == "connect" && e.Dport == 9 && e.Errno == "ECONNREFUSED" && e.Container == c.name && e.Netns == ns
	}
	before := live.count(t, match)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c.probe()
		for poll := time.Now().Add(300 * time.Millisecond); time.Now().Before(poll); time.Sleep(20 * time.Millisecond) {
			if live.count(t, match) > before {
				return
			}
		}
	}
	t.Fatalf("sockscope did not show a probe from container %s (netns %d) within 15s", c.name, ns)
}

// successes counts successful connects to port 8080.
func successes(evs []jsonEvent, keep func(jsonEvent) bool) int {
	return connects(evs, func(e jsonEvent) bool { return e.Dport == 8080 && (keep == nil || keep(e)) })[""]
}

func TestEventsCarryTheSelectedContainersName(t *testing.T) {
	requireDocker(t)
	const n = 20
	a := runHTTPD(t, "a")
	b := runHTTPD(t, "b")
	nsA, nsB := a.netnsInode(t), b.netnsInode(t)

	tr := startTrace(t, "--container", a.name)
	// Traffic in another container at the same time must not show up.
	errB := make(chan error, 1)
	go func() { errB <- b.wgets(n) }()
	a.wget(t, n)
	if err := <-errB; err != nil {
		t.Fatal(err)
	}
	evs, _ := tr.stop(t)

	for _, e := range evs {
		if e.Netns == nsB || e.Container == b.name {
			t.Fatalf("event from the other container %s: %+v", b.name, e)
		}
		if e.Container != a.name || e.ContainerID != a.shortID() || e.Netns != nsA {
			t.Fatalf("event not named %s (%s, netns %d): %+v", a.name, a.shortID(), nsA, e)
		}
	}
	byWget := func(e jsonEvent) bool { return e.Comm == "wget" }
	if got := successes(evs, byWget); got != n {
		t.Errorf("successful connects by wget: %d, want %d", got, n)
	}
	assertCounts(t, "connects", connects(evs, nil), map[string]int{"": n})
	if got := transitions(evs, byWget)["SYN_SENT->ESTABLISHED"]; got != n {
		t.Errorf("SYN_SENT->ESTABLISHED by wget: %d, want %d", got, n)
	}
	// httpd listened before sockscope started: its accepted connections are still its own.
	if got := transitions(evs, func(e jsonEvent) bool { return e.Comm == "httpd" })["SYN_RECV->ESTABLISHED"]; got != n {
		t.Errorf("SYN_RECV->ESTABLISHED by httpd: %d, want %d (all: %v)", got, n, transitions(evs, nil))
	}
}

func TestEventsAreNamedForTheirContainerWithoutAFilter(t *testing.T) {
	requireDocker(t)
	const n = 20
	a := runHTTPD(t, "a")
	nsA := a.netnsInode(t)

	tr := startTrace(t, "--port", "8080")
	a.wget(t, n)
	evs, _ := tr.stop(t)

	inA := func(e jsonEvent) bool { return e.Netns == nsA }
	for _, e := range evs {
		if inA(e) && (e.Container != a.name || e.ContainerID != a.shortID()) {
			t.Errorf("event in %s's netns not named for it: %+v", a.name, e)
		}
	}
	assertCounts(t, "connects in "+a.name, connects(evs, inA), map[string]int{"": n})
	if got := successes(evs, func(e jsonEvent) bool { return inA(e) && e.Container == a.name && e.Comm == "wget" }); got != n {
		t.Errorf("connects named %s by wget: %d, want %d", a.name, got, n)
	}
	if got := transitions(evs, func(e jsonEvent) bool { return inA(e) && e.Comm == "httpd" })["SYN_RECV->ESTABLISHED"]; got != n {
		t.Errorf("SYN_RECV->ESTABLISHED by httpd: %d, want %d", got, n)
	}
}

func TestContainerStartedAfterSockscopeIsTraced(t *testing.T) {
	requireDocker(t)
	const n = 20
	c := newContainer(t, []string{"create"}, containerName("c"), httpdCmd...)

	tr, live := startLiveTrace(t, "--container", c.name)
	sh(t, "docker", "start", c.name)
	c.waitListening(t, 8080)
	ns := c.netnsInode(t)
	waitFollowed(t, live, c, ns)
	c.wget(t, n)
	evs, _ := tr.stop(t)

	for _, e := range evs {
		if e.Container != c.name || e.ContainerID != c.shortID() || e.Netns != ns {
			t.Errorf("event not named %s (%s, netns %d): %+v", c.name, c.shortID(), ns, e)
		}
	}
	if got := successes(evs, func(e jsonEvent) bool { return e.Comm == "wget" }); got != n {
		t.Errorf("successful connects by wget: %d, want %d", got, n)
	}
	if got := transitions(evs, func(e jsonEvent) bool { return e.Comm == "httpd" })["SYN_RECV->ESTABLISHED"]; got != n {
		t.Errorf("SYN_RECV->ESTABLISHED by httpd: %d, want %d (all: %v)", got, n, transitions(evs, nil))
	}
}

// A restart gives the container a new netns. The kernel usually gives it the number of the old
// one, which is then free; holding the old one open forces a new number, so both cases are tested.
func TestRestartedContainerIsFollowed(t *testing.T) {
	requireDocker(t)
	for _, holdOld := range []bool{true, false} {
		name := "inode reused"
		if holdOld {
			name = "new inode"
		}
		t.Run(name, func(t *testing.T) {
			const n = 20
			d := runHTTPD(t, "d")
			before := d.netnsInode(t)
			if holdOld {
				f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", d.pid(t)))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
			}

			tr, live := startLiveTrace(t, "--container", d.name)
			d.wget(t, n)
			sh(t, "docker", "restart", "-t", "0", d.name)
			d.waitListening(t, 8080)
			after := d.netnsInode(t)
			t.Logf("netns before the restart %d, after %d", before, after)
			if holdOld && after == before {
				t.Fatalf("the new netns has the number of the old one (%d), which is still open", before)
			}
			// With the same number, the probe could in principle pass through the old filter
			// entry; but the watcher applies die and start within milliseconds of `docker restart`
			// returning, before httpd listens again, so the probe still marks the new state.
			waitFollowed(t, live, d, after)
			d.wget(t, n)
			evs, _ := tr.stop(t)

			for _, e := range evs {
				if e.Container != d.name || e.ContainerID != d.shortID() || (e.Netns != before && e.Netns != after) {
					t.Errorf("event not named %s (%s, netns %d or %d): %+v", d.name, d.shortID(), before, after, e)
				}
			}
			byWget := func(e jsonEvent) bool { return e.Comm == "wget" }
			if got := successes(evs, byWget); got != 2*n {
				t.Errorf("successful connects by wget: %d, want %d", got, 2*n)
			}
			if before != after {
				for _, ns := range []uint32{before, after} {
					if got := successes(evs, func(e jsonEvent) bool { return byWget(e) && e.Netns == ns }); got != n {
						t.Errorf("successful connects in netns %d: %d, want %d", ns, got, n)
					}
				}
			}
			// The new httpd listened before sockscope learnt of the restart: still its own.
			if got := transitions(evs, func(e jsonEvent) bool { return e.Comm == "httpd" })["SYN_RECV->ESTABLISHED"]; got != 2*n {
				t.Errorf("SYN_RECV->ESTABLISHED by httpd: %d, want %d (all: %v)", got, 2*n, transitions(evs, nil))
			}
		})
	}
}

func TestContainersSharingANetnsAreNamedTogether(t *testing.T) {
	requireDocker(t)
	const n = 10
	a := runHTTPD(t, "a")
	e := newContainer(t, []string{"run", "-d", "--network", "container:" + a.name}, containerName("e"), testImage, "sleep", "3600")
	ns := a.netnsInode(t)
	if got := e.netnsInode(t); got != ns {
		t.Fatalf("%s is in netns %d, want %s's %d", e.name, got, a.name, ns)
	}
	// Names sorted, and the IDs in the same order.
	both := []container{a, e}
	slices.SortFunc(both, func(x, y container) int { return strings.Compare(x.name, y.name) })
	wantName := both[0].name + "," + both[1].name
	wantID := both[0].shortID() + "," + both[1].shortID()

	tr := startTrace(t, "--container", e.name)
	e.wget(t, n)
	evs, _ := tr.stop(t)

	for _, ev := range evs {
		if ev.Container != wantName || ev.ContainerID != wantID || ev.Netns != ns {
			t.Fatalf("event not named %q (%q, netns %d): %+v", wantName, wantID, ns, ev)
		}
	}
	if got := successes(evs, func(ev jsonEvent) bool { return ev.Comm == "wget" }); got != n {
		t.Errorf("successful connects by wget: %d, want %d", got, n)
	}
}
