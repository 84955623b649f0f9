package critest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/sockscope/sockscope/internal/testenv"
)

// wgetOK runs wget in from against url until it prints "ok" (httpd may still be starting).
func wgetOK(t *testing.T, from *Container, url string) {
	t.Helper()
	var out, errOut string
	var code int32
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		// No -T: busybox 1.35's wget segfaults with it here (also on the host); ExecSync has a timeout.
		out, errOut, code = from.Exec(t, "wget", "-q", "-O-", url)
		if code == 0 && strings.TrimSpace(out) == "ok" {
			return
		}
	}
	t.Fatalf("wget %s in %s: exit %d, stdout %q, stderr %q; want ok", url, from.Name, code, out, errOut)
}

// TestSmoke is what .ci/cri.sh runs last: a pod, a container serving httpd, wget from inside it.
func TestSmoke(t *testing.T) {
	testenv.Root(t)
	c := Dial(t, Endpoint(t))
	pod := c.RunPod(t, "sockscope-ci", "smoke", PodOptions{})
	web := pod.Start(t, "web", Image, "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www")
	wgetOK(t, web, "http://127.0.0.1:8080/")
}

// TestPod proves the helpers against the real runtime: two containers share the pod's network
// namespace (wget from one reaches httpd in the other on the pod's loopback), a hostNetwork pod
// lives in the host's, and removal leaves nothing behind.
func TestPod(t *testing.T) {
	testenv.Root(t)
	testPod(t, Endpoint(t))
}

// TestPodContainerd2 is TestPod on the containerd 2 of .ci/cri2.sh, whose tests use the same
// helpers.
func TestPodContainerd2(t *testing.T) {
	testenv.Root(t)
	testPod(t, Containerd2Endpoint(t))
}

func testPod(t *testing.T, endpoint string) {
	c := Dial(t, endpoint)
	host := HostNetNS(t)

	pod := c.RunPod(t, "shop", "web-0", PodOptions{Labels: map[string]string{"app": "web"}})
	web := pod.Start(t, "web", Image, "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www")
	side := pod.Start(t, "sidecar", Image, "sleep", "3600")
	wgetOK(t, side, "http://127.0.0.1:8080/")

	podNS := pod.NetNS(t)
	if podNS == host {
		t.Fatalf("pod shop/web-0 runs in the host's network namespace (%d)", host)
	}
	for _, ctr := range []*Container{web, side} {
		if got := ctr.NetNS(t); got != podNS {
			t.Errorf("container %s: netns %d, want the sandbox's %d", ctr.Name, got, podNS)
		}
	}
	// The runtime spec names the pinned netns (/var/run/netns/cni-...): the same namespace.
	path := pod.Info(t).NamespacePath("network")
	if path == "" {
		t.Fatal("pod's runtime spec joins no network namespace by path")
	}
	if ino, err := NetNSOfPath(path); err != nil || ino != podNS {
		t.Errorf("netns at %s: inode %d (%v), want %d", path, ino, err, podNS)
	}

	// The CRI view: the sandbox and its containers carry the kubelet's labels.
	cx, cancel := ctx()
	defer cancel()
	list, err := c.Runtime.ListContainers(cx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod.ID},
	})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	id := c.ImageID(t, Image)
	for _, ctr := range list.Containers {
		if ctr.Labels[LabelPodName] != "web-0" || ctr.Labels[LabelPodNamespace] != "shop" {
			t.Errorf("container %s: labels %v", ctr.Metadata.Name, ctr.Labels)
		}
		names[ctr.Labels[LabelContainerName]] = true
		// Like a kubelet, Start names the image by its ID: the list echoes it, and only the
		// status names the image by a tag (containerd: its first one).
		if ctr.Image.GetImage() != id {
			t.Errorf("container %s: ListContainers image %q, want the ID %s", ctr.Metadata.Name, ctr.Image.GetImage(), id)
		}
	}
	if got := web.Status(t).Status.Image.GetImage(); got != Image {
		t.Errorf("ContainerStatus image %q, want %s", got, Image)
	}
	if len(names) != 2 || !names["web"] || !names["sidecar"] {
		t.Errorf("ListContainers in the pod: %v, want web and sidecar", names)
	}

	hostPod := c.RunPod(t, "kube-system", "node-agent", PodOptions{HostNetwork: true})
	agent := hostPod.Start(t, "agent", Image)
	if got := hostPod.NetNS(t); got != host {
		t.Errorf("hostNetwork pod: netns %d, want the host's %d", got, host)
	}
	if got := agent.NetNS(t); got != host {
		t.Errorf("container in a hostNetwork pod: netns %d, want the host's %d", got, host)
	}
	if p := hostPod.Info(t).NamespacePath("network"); p != "" {
		t.Errorf("hostNetwork pod's spec joins the network namespace %s, want none (the host's)", p)
	}

	// Removal: the sandbox, its containers and its pinned netns are gone.
	pid := pod.Pid(t)
	pod.Remove(t)
	if _, err := c.Runtime.PodSandboxStatus(cx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.ID}); err == nil {
		t.Error("PodSandboxStatus answers after Remove")
	}
	list, err = c.Runtime.ListContainers(cx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod.ID},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Containers) != 0 {
		t.Errorf("ListContainers after Remove: %d containers left", len(list.Containers))
	}
	if _, err := NetNSOfPid(pid); err == nil {
		t.Errorf("the sandbox process %d still runs after Remove", pid)
	}
	if _, err := NetNSOfPath(path); err == nil {
		t.Errorf("the pod's netns %s is still pinned after Remove", path)
	}
}

// TestContainerd2Events shows, on the containerd 2 of .ci/cri2.sh, what sockscope's event path
// (containers/cri.go, followEvents) relies on: GetContainerEvents streams each step of a pod's life,
// the sandbox's with the sandbox ID as container_id, every event carrying the pod's status.
func TestContainerd2Events(t *testing.T) {
	testenv.Root(t)
	c := Dial(t, Containerd2Endpoint(t))
	cx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.Runtime.GetContainerEvents(cx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	evs := make(chan *runtimeapi.ContainerEventResponse, 100)
	go func() {
		defer close(evs)
		for {
			e, err := stream.Recv()
			if err != nil {
				return
			}
			evs <- e
		}
	}()
	pod := c.RunPod(t, "sockscope-ci", "events", PodOptions{})
	app := pod.Start(t, "app", Image)
	pod.Remove(t)

	want := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	got := map[string][]runtimeapi.ContainerEventType{}
	deadline := time.After(10 * time.Second)
	for len(got[pod.ID]) < len(want) || len(got[app.ID]) < len(want) {
		select {
		case e, ok := <-evs:
			if !ok {
				t.Fatalf("the event stream ended; so far %v", got)
			}
			// The runtime holds events while nobody subscribes, for the next subscriber: those
			// of earlier tests may come first.
			if e.ContainerId != pod.ID && e.ContainerId != app.ID {
				continue
			}
			got[e.ContainerId] = append(got[e.ContainerId], e.ContainerEventType)
			st := e.GetPodSandboxStatus()
			if st.GetId() != pod.ID || st.GetMetadata().GetName() != "events" || st.GetMetadata().GetNamespace() != "sockscope-ci" {
				t.Errorf("%s of %s: pod status %v, want sockscope-ci/events (%s)", e.ContainerEventType, e.ContainerId, st, pod.ID)
			}
		case <-deadline:
			t.Fatalf("10 s after the pod was removed: events of the sandbox %v, of the container %v; want %v each", got[pod.ID], got[app.ID], want)
		}
	}
	for id, what := range map[string]string{pod.ID: "sandbox", app.ID: "container"} {
		if !slices.Equal(got[id], want) {
			t.Errorf("events of the %s: %v, want %v", what, got[id], want)
		}
	}
}
