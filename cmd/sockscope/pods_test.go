package main

// End-to-end tests of naming on a Kubernetes node: the real binary and kernel, and a real
// containerd with CRI (start one with: bash .ci/cri.sh) driven through CRI the way a kubelet
// drives it. Pods get an interface on .ci/cri.sh's isolated bridge, but every byte of test
// traffic stays on loopback inside a pod (or, for a hostNetwork pod, on the host's loopback).

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/critest"
)

// requireCRI requires what requireTracing does plus a CRI runtime; it returns a client and the
// endpoint as users give it to --runtime-endpoint.
func requireCRI(t *testing.T) (*critest.Client, string) {
	t.Helper()
	requireTracing(t)
	sock := critest.Endpoint(t)
	return critest.Dial(t, sock), "unix://" + sock
}

// podName returns NAME-RANDOM, so that runs never collide in the runtime's pod list.
func podName(name string) string { return fmt.Sprintf("%s-%04x", name, rand.IntN(1<<16)) }

// serveHTTP starts busybox httpd on 127.0.0.1:port in a new container of the pod and waits until
// it listens (read from /proc, so that waiting makes no traffic).
func serveHTTP(t *testing.T, pod *critest.Pod, name string, port int) *critest.Container {
	t.Helper()
	c := pod.Start(t, name, critest.Image, "httpd", "-f", "-p", "127.0.0.1:"+strconv.Itoa(port), "-h", "/www")
	waitListeningPid(t, c.Pid(t), port)
	return c
}

// waitListeningPid waits until a TCP socket listens on port in pid's network namespace.
func waitListeningPid(t *testing.T, pid, port int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !listens(pid, port) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: nothing listens on port %d after 15s", pid, port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// podWgets fetches http://127.0.0.1:port/ n times from inside container c, one wget each.
func podWgets(t *testing.T, c *critest.Container, port, n int) {
	t.Helper()
	script := fmt.Sprintf("for i in $(seq %d); do wget -q -O- http://127.0.0.1:%d/ || exit 1; done", n, port)
	out, errOut, code := c.Exec(t, "sh", "-c", script)
	if code != 0 || strings.Count(out, "ok\n") != n {
		t.Fatalf("wget in %s: exit %d, %d answers, want %d:\n%s%s", c.Name, code, strings.Count(out, "ok\n"), n, out, errOut)
	}
}

// A pod started after sockscope is named NAMESPACE/POD from its first event on (httpd's listen,
// milliseconds after the sandbox starts), with k8s_namespace and k8s_pod; a hostNetwork pod shares
// the host's namespace, which stays "host" and is never attributed to the pod.
func TestPodEventsAreNamedNamespaceSlashPodFromTheirFirstEvent(t *testing.T) {
	c, ep := requireCRI(t)
	const n = 10
	tr := startTrace(t, "--runtime-endpoint", ep)

	pod := c.RunPod(t, "shop", "web-0", critest.PodOptions{})
	web := serveHTTP(t, pod, "web", 8080)
	client := pod.Start(t, "client", critest.Image)
	podWgets(t, client, 8080, n)

	agentPod := c.RunPod(t, "kube-system", podName("agent"), critest.PodOptions{HostNetwork: true})
	hostPort := freePort(t)
	agent := serveHTTP(t, agentPod, "agent", hostPort)
	podWgets(t, agent, hostPort, 3)
	evs, _ := tr.stop(t)

	podNs := uint32(pod.NetNS(t))
	host := uint32(critest.HostNetNS(t))
	if agentNs := uint32(agentPod.NetNS(t)); agentNs != host {
		t.Fatalf("hostNetwork pod's netns %d is not the host's %d", agentNs, host)
	}
	webID, clientID := web.ID[:12], client.ID[:12]
	var inPod []jsonEvent
	for _, e := range evs {
		if e.K8sPod == agentPod.Name() || strings.Contains(e.Container, agentPod.Name()) {
			t.Errorf("an event is attributed to the hostNetwork pod: %+v", e)
		}
		if e.Netns == host && (e.Dport == hostPort || e.Sport == hostPort) {
			if e.Container != "host" || e.K8sNamespace != "" || e.K8sPod != "" {
				t.Errorf("host-network traffic not named host: %+v", e)
			}
		}
		if e.Netns != podNs {
			continue
		}
		inPod = append(inPod, e)
		// Before the client container started, the pod held the web container only.
		if e.Container != "shop/web-0" || e.K8sNamespace != "shop" || e.K8sPod != "web-0" ||
			(e.ContainerID != webID && e.ContainerID != clientID+","+webID) {
			t.Errorf("event in the pod's netns %d not named shop/web-0 (IDs %s, %s): %+v", podNs, clientID, webID, e)
		}
	}
	if len(inPod) == 0 {
		t.Fatalf("no events from the pod's netns %d", podNs)
	}
	first := inPod[0]
	if first.Type != "state" || first.OldState != "CLOSE" || first.NewState != "LISTEN" || first.Comm != "httpd" {
		t.Errorf("the pod's first event is not httpd's listen: %+v", first)
	}
	isWget := func(e jsonEvent) bool { return e.Netns == podNs && e.Comm == "wget" }
	assertCounts(t, "connects in the pod", connects(evs, func(e jsonEvent) bool { return e.Netns == podNs }), map[string]int{"": n})
	if got := transitions(evs, isWget)["SYN_SENT->ESTABLISHED"]; got != n {
		t.Errorf("SYN_SENT->ESTABLISHED by wget in the pod: %d, want %d", got, n)
	}
	if got := transitions(evs, func(e jsonEvent) bool { return e.Netns == podNs && e.Comm == "httpd" })["SYN_RECV->ESTABLISHED"]; got != n {
		t.Errorf("SYN_RECV->ESTABLISHED by httpd in the pod: %d, want %d", got, n)
	}
	hostConnects := connects(evs, func(e jsonEvent) bool { return e.Netns == host && e.Dport == hostPort })
	assertCounts(t, "connects on the host's network by the hostNetwork pod", hostConnects, map[string]int{"": 3})
}

// --container takes NAMESPACE/POD, or a pod's name when one namespace has it, in trace, sockets and
// record alike: exactly that pod's netns, while another pod of the same name in another namespace
// and a third pod make traffic at the same time.
func TestContainerSelectsAPodInEveryCommand(t *testing.T) {
	c, ep := requireCRI(t)
	const n = 6
	name := podName("cart")
	cart := c.RunPod(t, "shop", name, critest.PodOptions{})
	other := c.RunPod(t, "staging", name, critest.PodOptions{})
	third := c.RunPod(t, "shop", podName("db"), critest.PodOptions{})
	var clients []*critest.Container
	for _, p := range []*critest.Pod{cart, other, third} {
		serveHTTP(t, p, "web", 8080)
		clients = append(clients, p.Start(t, "client", critest.Image))
	}
	cartNs := uint32(cart.NetNS(t))
	key := "shop/" + name

	// Only NAMESPACE/POD names the pod: its name alone is in two namespaces.
	r := runSockscope(t, "trace", "--runtime-endpoint", ep, "--container", name)
	assertFailure(t, r, fmt.Sprintf("pod name %q is in 2 namespaces: %s, staging/%s; give NAMESPACE/POD", name, key, name))
	tr := startTrace(t, "--runtime-endpoint", ep, "--container", key)
	rec, file := startRecord(t, "--runtime-endpoint", ep, "--container", key)
	for _, cl := range clients {
		podWgets(t, cl, 8080, n)
	}
	evs, _ := tr.stop(t)
	stopRecord(t, rec)
	for _, e := range evs {
		if e.Netns != cartNs || e.Container != key || e.K8sNamespace != "shop" || e.K8sPod != name {
			t.Fatalf("trace --container %s: event from elsewhere or misnamed: %+v", key, e)
		}
	}
	assertCounts(t, "connects", connects(evs, nil), map[string]int{"": n})

	// The recording holds the same, and names the pod in the report.
	replay := jsonLines[jsonEvent](t, runSockscope(t, "trace", "-r", file, "-o", "json").stdout)
	assertCounts(t, "replayed connects", connects(replay, nil), map[string]int{"": n})
	for _, e := range replay {
		if e.Netns != cartNs || e.Container != key || e.K8sPod != name {
			t.Fatalf("replay: event from elsewhere or misnamed: %+v", e)
		}
	}
	var report struct {
		Targets []struct {
			Name         string
			Netns        uint32
			K8sNamespace string `json:"k8s_namespace"`
			K8sPod       string `json:"k8s_pod"`
		}
	}
	out := runSockscope(t, "report", file, "-o", "json")
	if err := json.Unmarshal([]byte(out.stdout), &report); err != nil {
		t.Fatalf("report -o json: %v\n%s", err, out.stderr)
	}
	if len(report.Targets) != 1 || report.Targets[0].Name != key || report.Targets[0].Netns != cartNs ||
		report.Targets[0].K8sNamespace != "shop" || report.Targets[0].K8sPod != name {
		t.Errorf("report targets %+v, want only %s (netns %d)", report.Targets, key, cartNs)
	}

	// sockets: the pod's sockets, named, equal to ss inside its netns.
	socks := listSockets(t, "--runtime-endpoint", ep, "-c", key)
	pid := strconv.Itoa(cart.Pid(t))
	want := ssTuplesOf(t, "nsenter", "-t", pid, "-n", "ss", "-tanH")
	if got := tuples(socks); !slices.Equal(got, want) || len(got) == 0 {
		t.Errorf("sockets -c %s:\n%s\nnsenter -t %s -n ss -tan:\n%s", key, strings.Join(got, "\n"), pid, strings.Join(want, "\n"))
	}
	for _, s := range socks {
		if s.Container != key || s.K8sNamespace != "shop" || s.K8sPod != name || s.Netns != cartNs {
			t.Errorf("socket not named for %s: %+v", key, s)
		}
	}
	// A pod's name alone selects it when it is unique.
	thirdNs := uint32(third.NetNS(t))
	for _, s := range listSockets(t, "--runtime-endpoint", ep, "-c", third.Name()) {
		if s.Netns != thirdNs || s.Container != "shop/"+third.Name() {
			t.Errorf("sockets -c %s: %+v", third.Name(), s)
		}
	}
	// --all lists every pod once, by NAMESPACE/POD.
	seen := map[string]int{}
	for _, s := range listSockets(t, "--runtime-endpoint", ep, "--all", "--state", "listen") {
		seen[s.Container]++
	}
	for _, k := range []string{key, "staging/" + name, "shop/" + third.Name()} {
		if seen[k] != 1 {
			t.Errorf("sockets --all: %d listeners named %s, want 1 (%v)", seen[k], k, seen)
		}
	}
}
