package containers

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// listed is a Runtime whose containers the test sets: it exercises how the watcher merges what
// several runtimes report, with no runtime behind it. (The real runtimes are in the e2e tests.)
type listed struct {
	info  Info
	mu    sync.Mutex
	cs    []Container
	lists int
}

func (l *listed) Info() Info { return l.info }
func (l *listed) Running(context.Context) ([]Container, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lists++
	return append([]Container(nil), l.cs...), nil
}
func (l *listed) All(ctx context.Context) ([]Container, error) { return l.Running(ctx) }
func (l *listed) Watch(ctx context.Context, notify func(Event)) error {
	<-ctx.Done()
	return ctx.Err()
}
func (l *listed) Close() error { return nil }

func (l *listed) set(cs ...Container) {
	l.mu.Lock()
	l.cs = cs
	l.mu.Unlock()
}

func (l *listed) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lists
}

// self is a container "running" in the test's own namespace, which the watcher can check.
func self(t *testing.T, id, name string, pod Pod, sandbox bool) Container {
	t.Helper()
	path := "/proc/" + strconv.Itoa(os.Getpid()) + "/ns/net"
	ino, err := NetnsInodeOfPath(path)
	if err != nil {
		t.Fatal(err)
	}
	return Container{ID: id, Name: name, Pod: pod, Sandbox: sandbox, Pid: os.Getpid(), Netns: ino, NetnsPath: path}
}

// Docker and cri-dockerd report the same containers (cri-dockerd's IDs are Docker's): they count
// once, named as the pod that cri-dockerd knows them by.
func TestWatcherCountsAContainerTwoRuntimesReportOnce(t *testing.T) {
	pod := Pod{Namespace: "shop", Name: "web-0"}
	docker := &listed{info: Info{Kind: "docker"}}
	cri := &listed{info: Info{Kind: "cri-dockerd"}}
	plain := self(t, "aaaa000000000000", "k8s_web_web-0_shop_u_0", Pod{}, false)
	docker.set(plain)
	cri.set(self(t, "aaaa000000000000", "web", pod, false), self(t, "bbbb000000000000", "", pod, true))
	var got []Container
	// 1 is the "host": the test's namespace is then a pod's.
	w := NewWatcher([]Runtime{docker, cri}, 1, nil, nil)
	w.OnUpdate = func(cs []Container) { got = cs }
	if err := w.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("OnUpdate got %d containers, want 2 (one per ID): %+v", len(got), got)
	}
	if got[0].ID != "aaaa000000000000" || got[0].Pod != pod {
		t.Errorf("the container both report: %+v, want it as cri-dockerd knows it, in pod %v", got[0], pod)
	}
	n, ok := w.Names().Lookup(plain.Netns)
	if want := (Name{Name: "shop/web-0", ID: "aaaa00000000", Namespace: "shop", Pod: "web-0"}); !ok || n != want {
		t.Errorf("Lookup = %+v, %v; want %+v", n, ok, want)
	}
}

// Resolve asks the runtimes again for a namespace nobody has named, but at most once per
// namespace every 2 s: a namespace that no runtime will ever name (ip netns) costs one list.
func TestResolveAsksAgainOnceForAnUnknownNamespace(t *testing.T) {
	rt := &listed{info: Info{Kind: "containerd"}}
	w := NewWatcher([]Runtime{rt}, 1, nil, nil)
	if err := w.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := self(t, "cccc000000000000", "", Pod{Namespace: "shop", Name: "cart-0"}, true)
	if _, ok := w.Names().Lookup(c.Netns); ok {
		t.Fatal("named before the runtime reported it")
	}
	rt.set(c) // the pod starts; the watcher has not heard yet
	before := rt.count()
	n, ok := w.Resolve(context.Background(), c.Netns)
	if !ok || n.Name != "shop/cart-0" || rt.count() != before+1 {
		t.Fatalf("Resolve = %+v, %v after %d lists; want shop/cart-0 after one", n, ok, rt.count()-before)
	}
	// Known now: no list.
	w.Resolve(context.Background(), c.Netns)
	if rt.count() != before+1 {
		t.Errorf("Resolve of a named namespace listed again")
	}
	// Unknown and asked about twice in a row: one list.
	before = rt.count()
	for range 3 {
		if _, ok := w.Resolve(context.Background(), 12345); ok {
			t.Fatal("named an inode nobody has")
		}
	}
	if got := rt.count() - before; got != 1 {
		t.Errorf("three Resolves of one unknown namespace listed %d times, want 1", got)
	}
	// Many different unknown namespaces: at most 5 lists a second.
	before = rt.count()
	start := time.Now()
	for ino := uint32(20000); ino < 20050; ino++ {
		w.Resolve(context.Background(), ino)
	}
	if got := rt.count() - before; got > 5 && time.Since(start) < time.Second {
		t.Errorf("50 unknown namespaces within %v listed %d times, want at most 5", time.Since(start), got)
	}
}

// An exit the runtime reports goes to OnDie, with its code, before the list without it.
func TestWatcherReportsExitsWithTheirCode(t *testing.T) {
	rt := &listed{info: Info{Kind: "podman"}}
	c := self(t, "dddd000000000000", "job", Pod{}, false)
	rt.set(c)
	w := NewWatcher([]Runtime{rt}, 1, nil, nil)
	type exit struct {
		id   string
		code int
	}
	var exits []exit
	w.OnDie = func(e Exit) { exits = append(exits, exit{e.ID, e.ExitCode}) }
	if err := w.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	rt.set()
	w.apply(0, Event{Stopped: c.ID, ExitCode: 3})
	// A second report of the same exit (Docker sends die, then stop) is not a second exit.
	w.apply(0, Event{Stopped: c.ID, ExitCode: 3})
	if len(exits) != 1 || exits[0] != (exit{c.ID, 3}) {
		t.Errorf("OnDie calls %+v, want one with exit code 3", exits)
	}
}

// A container that starts and stops between two lists (a crash loop on a busy host, where the
// list after its start event comes too late) still has its exit reported once, with the name,
// image and times the events gave.
func TestWatcherReportsExitsOfContainersNeverListed(t *testing.T) {
	rt := &listed{info: Info{Kind: "docker"}}
	w := NewWatcher([]Runtime{rt}, 1, nil, nil)
	var exits []Exit
	w.OnDie = func(e Exit) { exits = append(exits, e) }
	if err := w.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	t0, t1 := time.Unix(100, 0), time.Unix(101, 0)
	const id = "eeee000000000000"
	for _, e := range []Event{
		{Changed: id, At: t0},
		{Stopped: id, ExitCode: 2, At: t1, Name: "crash", Image: "busybox"},
		{Stopped: id, ExitCode: 2, At: t1, Name: "crash", Image: "busybox"}, // reported again
		{Stopped: "ffff000000000000", ExitCode: 1},                          // nothing known of it
	} {
		w.apply(0, e)
	}
	want := Exit{Container: Container{ID: id, Name: "crash", Image: "busybox", Runtime: "docker"}, ExitCode: 2, Started: t0, At: t1}
	if len(exits) != 1 || exits[0].ID != want.ID || exits[0].Name != want.Name || exits[0].Image != want.Image ||
		exits[0].Runtime != want.Runtime || exits[0].Listed || exits[0].ExitCode != 2 || !exits[0].Started.Equal(t0) || !exits[0].At.Equal(t1) {
		t.Errorf("OnDie calls %+v, want one: %+v", exits, want)
	}
}
