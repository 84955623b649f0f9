package containers

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func statIno(t *testing.T, path string) uint32 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

func TestDialUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sock := "unix://" + t.TempDir() + "/docker.sock"
	_, err := DialDocker(ctx, sock)
	if err == nil {
		t.Fatal("Dial to a socket that does not exist succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"cannot reach the Docker daemon at " + sock, "no such file or directory", "DOCKER_HOST"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}

	// DOCKER_HOST is honoured when no host is given.
	t.Setenv("DOCKER_HOST", sock)
	if _, err := DialDocker(ctx, ""); err == nil || !strings.Contains(err.Error(), sock) {
		t.Errorf("DialDocker with DOCKER_HOST=%s: error %v does not name it", sock, err)
	}

	if _, err := DialDocker(ctx, "not-a-url"); err == nil || !strings.Contains(err.Error(), "not-a-url") {
		t.Errorf("DialDocker(not-a-url): error %v does not name the bad host", err)
	}

	// Loopback port 1: nothing listens there.
	if _, err := DialDocker(ctx, "tcp://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "cannot reach the Docker daemon at tcp://127.0.0.1:1: connect: connection refused") {
		t.Errorf("DialDocker(tcp://127.0.0.1:1): error %v, want one naming the address and the refusal", err)
	}
	// ssh:// needs the docker CLI; it is refused before any connection is tried.
	if _, err := DialDocker(ctx, "ssh://127.0.0.1"); err == nil || !strings.Contains(err.Error(), "ssh -nNT -L") {
		t.Errorf("DialDocker(ssh://...): error %v, want the socket-forwarding hint", err)
	}
}

func TestNotFoundMessage(t *testing.T) {
	ct := func(name string, up bool) Container {
		return Container{ID: strings.Repeat("ab", 32), Name: name, Up: up}
	}
	pod := Container{ID: strings.Repeat("cd", 32), Sandbox: true, Up: true, Pod: Pod{Namespace: "shop", Name: "web-0"}}
	err := notFoundError("wbe", []Container{
		ct("web", true),
		ct("webhook", true),
		ct("wbe-old", false), // not running: never suggested
		ct("db", true),
		ct("cache", true),
		pod,
	})
	want := `no container or pod named or with ID prefix "wbe"; closest running: web, db, cache`
	if err.Error() != want {
		t.Errorf("got  %q\nwant %q", err, want)
	}
	err = notFoundError("x", []Container{ct("old", false)})
	want = `no container or pod named or with ID prefix "x"; none is running`
	if err.Error() != want {
		t.Errorf("got  %q\nwant %q", err, want)
	}
	err = notFoundError("shop/web", []Container{ct("old", false), pod})
	want = `no container or pod named or with ID prefix "shop/web"; closest running: shop/web-0`
	if err.Error() != want {
		t.Errorf("got  %q\nwant %q", err, want)
	}
}

func TestFind(t *testing.T) {
	t.Parallel()
	c := needDocker(t)
	ctx := context.Background()
	name := uniqueName(t, "find")
	id := runContainer(t, name)

	for _, q := range []string{name, "/" + name, id, id[:12], id[:20]} {
		sel, err := Find(ctx, []Runtime{c}, q)
		if err != nil {
			t.Errorf("Find(%q): %v", q, err)
			continue
		}
		if sel.ID != id || sel.Pod != "" || sel.Name != name || sel.Query != q {
			t.Errorf("Find(%q) = %+v, want ID %s, name %s", q, sel, id, name)
		}
	}
	ct, err := c.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ct.ID != id || ct.Name != name || ct.Image != testImage || ct.Labels["sockscope.test"] != "1" || ct.Runtime != "docker" {
		t.Errorf("Inspect(%s) = %+v, want name %s, image %s, label sockscope.test=1, runtime docker", id, ct, name, testImage)
	}
	if ct.Pid <= 0 || ct.Netns == 0 || ct.NetnsPath != fmt.Sprintf("/proc/%d/ns/net", ct.Pid) {
		t.Errorf("Inspect: running container has Pid %d, Netns %d, NetnsPath %q", ct.Pid, ct.Netns, ct.NetnsPath)
	}

	// A container that is not running is found too.
	stopped := uniqueName(t, "find-created")
	sid := createContainer(t, stopped)
	sel, err := Find(ctx, []Runtime{c}, stopped)
	if err != nil {
		t.Fatalf("Find(%q) of a created container: %v", stopped, err)
	}
	if sel.ID != sid {
		t.Errorf("Find(created container) = %+v, want ID %s", sel, sid)
	}
}

func TestFindUnknown(t *testing.T) {
	t.Parallel()
	c := needDocker(t)
	name := uniqueName(t, "web")
	runContainer(t, name)
	// Last character changed (IDs are hex, so "z" makes no ID prefix either): edit distance 1 from
	// our container, more from any other.
	typo := name[:len(name)-1] + "z"
	_, err := Find(context.Background(), []Runtime{c}, typo)
	if err == nil {
		t.Fatalf("Find(%q) succeeded", typo)
	}
	want := fmt.Sprintf("no container or pod named or with ID prefix %q; closest running: %s", typo, name)
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Find(%q):\n got  %q\n want %q...", typo, err, want)
	}
}

func TestFindAmbiguousIDPrefix(t *testing.T) {
	t.Parallel()
	c := needDocker(t)
	// Create containers until two share the first hex digit of their ID (at most 17 by pigeonhole).
	first := map[byte]string{}
	var a, b string
	for i := 0; a == ""; i++ {
		id := createContainer(t, uniqueName(t, "ambig"+strconv.Itoa(i)))
		if other, ok := first[id[0]]; ok {
			a, b = other, id
		}
		first[id[0]] = id
	}
	_, err := Find(context.Background(), []Runtime{c}, a[:1])
	if err == nil {
		t.Fatalf("Find(%q) succeeded although %s and %s both start with it", a[:1], a[:12], b[:12])
	}
	for _, want := range []string{fmt.Sprintf("ID prefix %q matches", a[:1]), a[:12], b[:12]} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestNetnsOfRunningContainer(t *testing.T) {
	t.Parallel()
	c := needDocker(t)
	name := uniqueName(t, "netns")
	id := runContainer(t, name)
	ct, err := c.Inspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(docker(t, "inspect", "--format", "{{.State.Pid}}", id))
	if ct.Pid != pid {
		t.Errorf("Inspect: Pid %d, docker inspect says %d", ct.Pid, pid)
	}
	want := statIno(t, fmt.Sprintf("/proc/%d/ns/net", pid))
	got, err := NetnsInode(pid)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || ct.Netns != want {
		t.Errorf("NetnsInode(%d) = %d, Inspect Netns = %d, stat says %d", pid, got, ct.Netns, want)
	}
	host, err := HostNetns()
	if err != nil {
		t.Fatal(err)
	}
	if host == got {
		t.Errorf("container netns %d equals the host's", got)
	}

	// --network host: the container lives in the host's netns.
	hostNet := uniqueName(t, "hostnet")
	hid := runContainer(t, hostNet, "--network", "host")
	hc, err := c.Inspect(context.Background(), hid)
	if err != nil {
		t.Fatal(err)
	}
	if hc.Netns != host {
		t.Errorf("container with --network host: Netns %d, HostNetns %d", hc.Netns, host)
	}
}

// TestInspectWaitsForTheDaemonToSeeAnExit kills a container's process and inspects the container
// at once, while the daemon still says it runs: that is a container exiting, not a /proc without
// the host's processes, so the answer is "stopped", not an error. (A watcher listing an exiting
// container used to fail with "is sockscope running in a container without --pid=host?".)
func TestInspectWaitsForTheDaemonToSeeAnExit(t *testing.T) {
	t.Parallel()
	c := needDocker(t)
	for round := range 10 {
		name := uniqueName(t, fmt.Sprintf("exit%d", round))
		id := runContainer(t, name)
		pid := inspectPid(t, id)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Wait until the process is reaped, so that /proc no longer shows it: the daemon learns of
		// it only after that.
		// it only after that. Poll without sleeping: the daemon's window is a few milliseconds.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("PID %d still in /proc 5 s after SIGKILL", pid)
			}
		}
		ct, err := c.Inspect(context.Background(), id)
		if err != nil {
			t.Fatalf("round %d: Inspect of a container whose process was just killed: %v", round, err)
		}
		if ct.Up || ct.Pid != 0 || ct.Netns != 0 {
			t.Errorf("round %d: Inspect after the kill = Up %v, Pid %d, Netns %d; want a stopped container", round, ct.Up, ct.Pid, ct.Netns)
		}
	}
}

func TestHostNetns(t *testing.T) {
	host, err := HostNetns()
	if err != nil {
		t.Fatal(err)
	}
	// /proc/1/ns/net when readable (it is not in some sandboxes, even for root), else our own.
	want := statIno(t, "/proc/self/ns/net")
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/1/ns/net", &st); err == nil {
		want = uint32(st.Ino)
	} else {
		t.Logf("/proc/1/ns/net: %v; the host netns is taken from /proc/self", err)
	}
	if host != want {
		t.Errorf("HostNetns() = %d, want %d", host, want)
	}
}

func TestNetnsInodeOfPath(t *testing.T) {
	self := statIno(t, "/proc/self/ns/net")
	got, err := NetnsInodeOfPath("/proc/self/ns/net")
	if err != nil || got != self {
		t.Errorf("NetnsInodeOfPath(/proc/self/ns/net) = %d, %v; want %d", got, err, self)
	}
	if _, err := NetnsInode(os.Getpid()); err != nil {
		t.Errorf("NetnsInode(self): %v", err)
	}

	plain := t.TempDir() + "/netns"
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NetnsInodeOfPath(plain); err == nil || !strings.Contains(err.Error(), "not a namespace file") {
		t.Errorf("NetnsInodeOfPath(regular file) error = %v, want one saying it is not a namespace file", err)
	}
	if _, err := NetnsInodeOfPath("/proc/self/ns/mnt"); err == nil || !strings.Contains(err.Error(), "not of a network namespace") {
		t.Errorf("NetnsInodeOfPath(/proc/self/ns/mnt) error = %v, want one saying it is not a network namespace", err)
	}
	if _, err := NetnsInodeOfPath("/nonexistent/netns"); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("NetnsInodeOfPath(missing) error = %v, want not-exist", err)
	}
	if _, err := NetnsInode(0); err == nil {
		t.Error("NetnsInode(0) succeeded")
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

func TestSharedNetnsNames(t *testing.T) {
	t.Parallel()
	c := needDocker(t)
	a := uniqueName(t, "pod-a")
	b := a + "-b" // sorts after a
	aid := runContainer(t, a)
	bid := runContainer(t, b, "--network", "container:"+a)

	w, ch := startWatcher(t, c, []string{aid, bid})
	ca, err := c.Inspect(context.Background(), aid)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := c.Inspect(context.Background(), bid)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Netns == 0 || ca.Netns != cb.Netns {
		t.Fatalf("netns of %s = %d, of %s (--network container:%s) = %d; want equal", a, ca.Netns, b, a, cb.Netns)
	}
	got, ok := w.Names().Lookup(ca.Netns)
	if wantName, wantID := a+","+b, aid[:12]+","+bid[:12]; !ok || got.Name != wantName || got.ID != wantID || got.Pod != "" {
		t.Errorf("Lookup(%d) = %+v, %v; want %q, %q", ca.Netns, got, ok, wantName, wantID)
	}
	if !ch.lastIs(ca.Netns) {
		set, _ := ch.last()
		t.Errorf("onChange got %v, want [%d] once", set, ca.Netns)
	}
	host, _ := HostNetns()
	if got, ok := w.Names().Lookup(host); got != HostName || !ok {
		t.Errorf("Lookup(host) = %+v, %v", got, ok)
	}
	if _, ok := w.Names().Lookup(1); ok {
		t.Error("Lookup(1) is known")
	}
}

// TestWatcherFollowsStartRestartStop selects a container before it runs, then starts, restarts and
// stops it while the watcher runs.
func TestWatcherFollowsStartRestartStop(t *testing.T) {
	t.Parallel()
	c := needDocker(t)
	name := uniqueName(t, "follow")
	id := createContainer(t, name)

	w, ch := startWatcher(t, c, []string{id})
	if !ch.lastIs() {
		set, n := ch.last()
		t.Fatalf("after Sync with the selected container not running: onChange calls %d, last %v; want []", n, set)
	}

	// Start after Sync: the event stream brings it in.
	docker(t, "start", name)
	pid1 := inspectPid(t, id)
	ns1 := statIno(t, fmt.Sprintf("/proc/%d/ns/net", pid1))
	waitFor(t, 10*time.Second, fmt.Sprintf("onChange([%d]) after docker start", ns1), func() bool { return ch.lastIs(ns1) })
	if got, ok := w.Names().Lookup(ns1); !ok || got.Name != name || got.ID != id[:12] {
		t.Errorf("Lookup(%d) = %+v, %v; want %q, %q", ns1, got, ok, name, id[:12])
	}

	// Restart: a new process in a new netns. The kernel hands out the lowest free namespace inode,
	// so the new netns often gets the number the old one had just freed; hold the old netns open
	// so that the new one must get another number.
	old, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid1))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	_, before := ch.last()
	docker(t, "restart", "-t", "0", name)
	pid2 := inspectPid(t, id)
	ns2 := statIno(t, fmt.Sprintf("/proc/%d/ns/net", pid2))
	if pid2 == pid1 || ns2 == ns1 {
		t.Fatalf("docker restart kept PID %d / netns %d", pid1, ns1)
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("onChange([%d]) after docker restart (was [%d])", ns2, ns1), func() bool { return ch.lastIs(ns2) })
	for _, set := range ch.since(before) {
		if slices.Contains(set, ns1) {
			t.Errorf("after the restart onChange reported the old netns %d: %v", ns1, ch.since(before))
		}
	}
	if got, ok := w.Names().Lookup(ns2); !ok || got.Name != name {
		t.Errorf("Lookup(new netns %d) = %+v, %v; want %q", ns2, got, ok, name)
	}
	// The old netns keeps its name for late events until another container claims the inode.
	if got, ok := w.Names().Lookup(ns1); !ok || got.Name != name {
		t.Errorf("Lookup(old netns %d) = %+v, %v; want %q kept", ns1, got, ok, name)
	}

	// Stop: it leaves the selected set at once, but its netns stays named. (Hold it open so that no
	// container of a parallel test can be given its inode and so claim the name.)
	held, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid2))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	docker(t, "stop", "-t", "0", name)
	waitFor(t, 10*time.Second, "onChange([]) after docker stop", func() bool { return ch.lastIs() })
	if got, ok := w.Names().Lookup(ns2); !ok || got.Name != name {
		t.Errorf("Lookup(%d) after stop = %+v, %v; want %q kept", ns2, got, ok, name)
	}
}

// TestWatcherRestartSameInode lets the kernel reuse the inode (nothing holds the old netns): the
// owner must still hear that the netns went away and came back.
func TestWatcherRestartSameInode(t *testing.T) {
	t.Parallel()
	c := needDocker(t)
	name := uniqueName(t, "reuse")
	id := runContainer(t, name)
	_, ch := startWatcher(t, c, []string{id})
	ns1 := statIno(t, fmt.Sprintf("/proc/%d/ns/net", inspectPid(t, id)))
	if !ch.lastIs(ns1) {
		set, _ := ch.last()
		t.Fatalf("after Sync: onChange got %v, want [%d]", set, ns1)
	}
	_, before := ch.last()
	docker(t, "restart", "-t", "0", name)
	ns2 := statIno(t, fmt.Sprintf("/proc/%d/ns/net", inspectPid(t, id)))
	waitFor(t, 10*time.Second, fmt.Sprintf("onChange([%d]) after docker restart", ns2), func() bool {
		sets := ch.since(before)
		return len(sets) >= 2 && slices.Equal(sets[len(sets)-1], []uint32{ns2})
	})
	sets := ch.since(before)
	if !slices.ContainsFunc(sets, func(s []uint32) bool { return len(s) == 0 }) {
		t.Errorf("restart (netns %d -> %d): onChange got %v, want an empty set (die) before the new one", ns1, ns2, sets)
	}
	t.Logf("netns inode before restart %d, after %d", ns1, ns2)
}

// TestWatcherNamesAll follows every container (naming only) and names one started after Sync.
func TestWatcherNamesAll(t *testing.T) {
	t.Parallel()
	c := needDocker(t)
	name := uniqueName(t, "all")
	w, ch := startWatcher(t, c, nil)
	id := runContainer(t, name)
	ns := statIno(t, fmt.Sprintf("/proc/%d/ns/net", inspectPid(t, id)))
	waitFor(t, 10*time.Second, fmt.Sprintf("Names to name netns %d", ns), func() bool {
		got, ok := w.Names().Lookup(ns)
		return ok && got.Name == name
	})
	waitFor(t, 10*time.Second, "onChange to include the new netns", func() bool {
		set, _ := ch.last()
		return slices.Contains(set, ns)
	})
	host, _ := HostNetns()
	set, _ := ch.last()
	if slices.Contains(set, host) {
		t.Errorf("follow-all onChange set %v contains the host netns %d", set, host)
	}
}

func inspectPid(t *testing.T, id string) int {
	t.Helper()
	pid, err := strconv.Atoi(docker(t, "inspect", "--format", "{{.State.Pid}}", id))
	if err != nil || pid <= 0 {
		t.Fatalf("docker inspect %s: pid %d, %v", id, pid, err)
	}
	return pid
}
