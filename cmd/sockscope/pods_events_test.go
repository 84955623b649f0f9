package main

// End-to-end tests of naming pods through CRI's event stream, on the containerd 2 of .ci/cri2.sh
// (start it with: bash .ci/cri2.sh). sockscope polls a CRI runtime every second and, where the
// runtime streams events (GetContainerEvents; containerd 1.6 does not), each event polls at once.
// These tests set SOCKSCOPE_CRI_POLL_INTERVAL=1h, which the sockscope they start inherits: after
// its first list the poll would not come for an hour, so whatever it learns during a test came
// through an event. Every byte of test traffic stays on loopback inside a pod.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/critest"
)

// requireCRI2 is requireCRI for the containerd 2 runtime.
func requireCRI2(t *testing.T) (*critest.Client, string) {
	t.Helper()
	requireTracing(t)
	sock := critest.Containerd2Endpoint(t)
	return critest.Dial(t, sock), "unix://" + sock
}

// pollHourly makes the sockscope processes the test starts (they inherit its environment) list
// the runtime only when they start and when an event comes.
func pollHourly(t *testing.T) { t.Setenv("SOCKSCOPE_CRI_POLL_INTERVAL", "1h") }

// infoRows returns the sockscope_container_info lines of the exposition that carry pod="pod".
func infoRows(exposition, pod string) []string {
	var rows []string
	for _, line := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(line, "sockscope_container_info{") && strings.Contains(line, fmt.Sprintf(`pod=%q`, pod)) {
			rows = append(rows, line)
		}
	}
	return rows
}

// On containerd 2 the exporter names a pod started after it, and forgets one removed, through
// events alone: with the poll an hour away, the pod's sockscope_container_info row appears within
// seconds of its start (before it makes any traffic; the exporter does not look names up on the
// kernel's events either), its second container's row too, its series count the connections
// made in it, and all of them go when it is removed. Without the event stream (containerd 1.6, or
// eventsSafe saying no) this fails: nothing would list the runtime again for an hour.
func TestExportNamesContainerd2PodsFromEventsAlone(t *testing.T) {
	c, ep := requireCRI2(t)
	pollHourly(t)
	exp := startExport(t, "--runtime-endpoint", ep)
	up := fmt.Sprintf(`sockscope_runtime_up{endpoint=%q,runtime="containerd"}`, ep)
	// Up after the first list. The events of a pod that starts before sockscope subscribes are not
	// lost: containerd holds them for the next subscriber while nobody subscribes.
	waitMetrics(t, exp, 10*time.Second, "the runtime to be up", func(m string) bool { return value(m, up) == 1 })

	name := podName("events")
	key := "shop/" + name
	pod := c.RunPod(t, "shop", name, critest.PodOptions{})
	app := pod.Start(t, "app", critest.Image) // sleeps: no traffic
	started := time.Now()
	row := func(ctr *critest.Container) string {
		return fmt.Sprintf(`container=%q,container_id=%q,container_name=%q`, key, ctr.ID[:12], ctr.Name)
	}
	waitMetrics(t, exp, 10*time.Second, "the pod's container_info row (only an event can bring it)", func(m string) bool {
		rows := infoRows(m, name)
		return len(rows) == 1 && strings.Contains(rows[0], row(app)) && strings.Contains(rows[0], `namespace="shop"`)
	})
	t.Logf("%s named within %v of its container's start (/metrics read every 100 ms)", key, time.Since(started).Round(time.Millisecond))

	// A second container, serving httpd on the pod's loopback: its row joins the first, and the
	// pod's series count the connections app makes to it.
	web := serveHTTP(t, pod, "web", 8080)
	waitMetrics(t, exp, 10*time.Second, "the second container's row", func(m string) bool {
		rows := strings.Join(infoRows(m, name), "\n")
		return strings.Contains(rows, row(app)) && strings.Contains(rows, row(web))
	})
	const n = 5
	podWgets(t, app, 8080, n)
	success := fmt.Sprintf(`sockscope_tcp_connects_total{container=%q,namespace="shop",pod=%q,result="success"}`, key, name)
	waitMetrics(t, exp, 10*time.Second, fmt.Sprintf("%s = %d", success, n), func(m string) bool { return value(m, success) == n })

	pod.Remove(t)
	removed := time.Now()
	waitMetrics(t, exp, 10*time.Second, "every series of the removed pod to go (only an event can tell)", func(m string) bool {
		return !strings.Contains(m, name)
	})
	t.Logf("%s gone within %v of its removal returning", key, time.Since(removed).Round(time.Millisecond))
	if s := exp.stderr.String(); !strings.Contains(s, "naming containers through containerd v2.") {
		t.Errorf("sockscope export does not name through containerd 2:\n%s", s)
	}
	exp.stop(t)
}

// The control for the test above: on containerd 1.6, which streams no events, a pod started
// after the exporter stays unnamed while the poll is an hour away. Were SOCKSCOPE_CRI_POLL_INTERVAL
// ignored, the one-second poll would name it here, and would have named the containerd 2 pod above
// without any event.
func TestExportWithoutEventsNamesPodsOnlyAtThePoll(t *testing.T) {
	c, ep := requireCRI(t)
	pollHourly(t)
	exp := startExport(t, "--runtime-endpoint", ep)
	up := fmt.Sprintf(`sockscope_runtime_up{endpoint=%q,runtime="containerd"}`, ep)
	waitMetrics(t, exp, 10*time.Second, "the runtime to be up", func(m string) bool { return value(m, up) == 1 })
	name := podName("unnamed")
	pod := c.RunPod(t, "shop", name, critest.PodOptions{})
	pod.Start(t, "app", critest.Image)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if rows := infoRows(exp.metrics(t), name); len(rows) > 0 {
			t.Fatalf("containerd 1.6 pod named with the poll an hour away (is SOCKSCOPE_CRI_POLL_INTERVAL ignored?): %s", rows)
		}
	}
	exp.stop(t)
}

// trace names a containerd 2 pod's events NAMESPACE/POD with the poll an hour away. A namespace the
// kernel reports first is looked up at once, so this holds without events too; the export test
// above is the one that proves them.
func TestTraceNamesContainerd2PodsWithoutPolling(t *testing.T) {
	c, ep := requireCRI2(t)
	pollHourly(t)
	const n = 8
	tr := startTrace(t, "--runtime-endpoint", ep)

	name := podName("web")
	key := "shop/" + name
	pod := c.RunPod(t, "shop", name, critest.PodOptions{})
	web := serveHTTP(t, pod, "web", 8080)
	client := pod.Start(t, "client", critest.Image)
	podWgets(t, client, 8080, n)
	evs, _ := tr.stop(t)

	podNs := uint32(pod.NetNS(t))
	// The pod's containers, sorted by name, as far as sockscope knew them at each event: the
	// sandbox alone (named through its events before web ran), web, then client and web.
	ids := map[string]bool{"": true, web.ID[:12]: true, client.ID[:12] + "," + web.ID[:12]: true}
	var inPod []jsonEvent
	for _, e := range evs {
		if e.Netns != podNs {
			continue
		}
		inPod = append(inPod, e)
		if e.Container != key || e.K8sNamespace != "shop" || e.K8sPod != name || !ids[e.ContainerID] {
			t.Errorf("event in the pod's netns %d not named %s: %+v", podNs, key, e)
		}
	}
	if len(inPod) == 0 {
		t.Fatalf("no events from the pod's netns %d", podNs)
	}
	if first := inPod[0]; first.Type != "state" || first.NewState != "LISTEN" || first.Comm != "httpd" {
		t.Errorf("the pod's first event is not httpd's listen: %+v", first)
	}
	assertCounts(t, "connects in the pod", connects(evs, func(e jsonEvent) bool { return e.Netns == podNs }), map[string]int{"": n})
}
