package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/critest"
	"github.com/sockscope/sockscope/internal/testenv"
)

// On a containerd node: a pod's series carry namespace and pod (so PromQL joins with
// kube-state-metrics and cAdvisor on(namespace, pod)), its two containers are two
// sockscope_container_info rows of one namespace, a hostNetwork pod is listed under the host,
// and a removed pod's series go stale. Checked through a real Prometheus.
func TestExportNamesPodsForPrometheus(t *testing.T) {
	c, ep := requireCRI(t)
	requirePrometheus(t)
	exp := startExport(t, "--runtime-endpoint", ep)
	prom := startPrometheus(t, scrapeJob{name: "sockscope", target: exp.addr})
	before := exp.metrics(t)
	tracked := value(before, `sockscope_bpf_map_entries{map="tracked"}`)

	name := podName("web")
	pod := c.RunPod(t, "shop", name, critest.PodOptions{})
	web := serveHTTP(t, pod, "web", 8080)
	client := pod.Start(t, "client", critest.Image)
	agentPod := c.RunPod(t, "kube-system", podName("agent"), critest.PodOptions{HostNetwork: true})
	agent := agentPod.Start(t, "agent", critest.Image)
	key := "shop/" + name

	rows := prom.waitFor(t, fmt.Sprintf(`sockscope_container_info{namespace="shop",pod=%q}`, name), 30*time.Second,
		func(s []sample) bool { return len(s) == 2 })
	slices.SortFunc(rows, func(a, b sample) int { return strings.Compare(a.Metric["container_name"], b.Metric["container_name"]) })
	for i, want := range []map[string]string{
		{"container": key, "container_name": "client", "container_id": client.ID[:12], "image": critest.Image, "runtime": "containerd", "host_network": "false"},
		{"container": key, "container_name": "web", "container_id": web.ID[:12], "image": critest.Image, "runtime": "containerd", "host_network": "false"},
	} {
		for k, v := range want {
			if rows[i].Metric[k] != v {
				t.Errorf("container_info row %d: %s=%q, want %q (%v)", i, k, rows[i].Metric[k], v, rows[i].Metric)
			}
		}
	}
	// The hostNetwork pod's container is listed under the host; no series is its own.
	hostRow := prom.waitFor(t, fmt.Sprintf(`sockscope_container_info{pod=%q}`, agentPod.Name()), 30*time.Second,
		func(s []sample) bool { return len(s) == 1 })[0].Metric
	if hostRow["container"] != "host" || hostRow["host_network"] != "true" || hostRow["container_name"] != "agent" ||
		hostRow["namespace"] != "kube-system" || hostRow["container_id"] != agent.ID[:12] {
		t.Errorf("hostNetwork pod's container_info: %v, want container=host, host_network=true", hostRow)
	}
	if s := prom.query(t, fmt.Sprintf(`sockscope_tcp_connects_total{pod=%q}`, agentPod.Name()), 0); len(s) != 0 {
		t.Errorf("the hostNetwork pod has series of its own: %+v", s)
	}

	success := fmt.Sprintf(`sockscope_tcp_connects_total{namespace="shop",pod=%q,result="success"}`, name)
	s := prom.waitFor(t, success, 30*time.Second, func(s []sample) bool { return len(s) == 1 && s[0].V == 0 })
	if s[0].Metric["container"] != key {
		t.Errorf("%s: container=%q, want %q", success, s[0].Metric["container"], key)
	}
	const n = 12
	podWgets(t, client, 8080, n)
	at := prom.scrapedAfter(t, success, time.Now())
	if got := prom.one(t, "increase("+success+"[10m])", at); !near(got, n) {
		t.Errorf("increase(%s) = %v, want %d (the wgets made in the pod)", success, got, n)
	}
	// The join users write: connects per pod, with kube-state-metrics' labels.
	if got := prom.one(t, fmt.Sprintf(`sum by (namespace, pod) (increase(sockscope_tcp_connects_total{pod=%q}[10m]))`, name), at); !near(got, n) {
		t.Errorf("sum by (namespace, pod) = %v, want %d", got, n)
	}
	assertGaugesEqualSs(t, prom, key, "nsenter", "-t", strconv.Itoa(pod.Pid(t)), "-n", "ss", "-tanH")

	pod.Remove(t)
	agentPod.Remove(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := exp.metrics(t)
		if !strings.Contains(m, name) && !strings.Contains(m, agentPod.Name()) && value(m, `sockscope_bpf_map_entries{map="tracked"}`) == tracked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after the pods were removed: still named %v, tracked %v (was %v)", strings.Contains(m, name),
				value(m, `sockscope_bpf_map_entries{map="tracked"}`), tracked)
		}
		time.Sleep(100 * time.Millisecond)
	}
	prom.waitFor(t, fmt.Sprintf(`sockscope_container_info{pod=%q}`, name), 10*time.Second, func(s []sample) bool { return len(s) == 0 })
	exp.stop(t)
}

// A containerd restart: metrics keep flowing while it is down (runtime_up 0, errors counted), the
// pods that outlive it (their shims do) keep their names, and a pod started after it comes back is
// named. Stopping the runtime disturbs other users of it, so this runs only in CI or when
// SOCKSCOPE_TEST_CRI_RESTART=1.
func TestExportSurvivesAContainerdRestart(t *testing.T) {
	c, ep := requireCRI(t)
	if !testenv.InCI() && os.Getenv("SOCKSCOPE_TEST_CRI_RESTART") != "1" {
		t.Skip("skipped: restarts the CRI runtime of .ci/cri.sh; set SOCKSCOPE_TEST_CRI_RESTART=1 to run it")
	}
	sock := strings.TrimPrefix(ep, "unix://")
	pidFile := strings.TrimSuffix(sock, "containerd.sock") + "containerd.pid"
	pidText, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("find the CRI containerd (.ci/cri.sh writes %s): %v", pidFile, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	exp := startExport(t, "--runtime-endpoint", ep)
	up := fmt.Sprintf(`sockscope_runtime_up{endpoint=%q,runtime="containerd"}`, ep)
	errs := fmt.Sprintf(`sockscope_runtime_errors_total{endpoint=%q,runtime="containerd"}`, ep)
	before := c.RunPod(t, "shop", podName("before"), critest.PodOptions{})
	waitMetrics(t, exp, 10*time.Second, "the pod started before the restart to be named", func(m string) bool {
		return value(m, up) == 1 && strings.Contains(m, fmt.Sprintf(`pod=%q`, before.Name()))
	})

	restarted := false
	restart := func() {
		if restarted {
			return
		}
		restarted = true
		out, err := exec.Command("bash", "../../.ci/cri.sh").CombinedOutput()
		if err != nil {
			t.Fatalf("restart containerd with .ci/cri.sh: %v\n%s", err, out)
		}
	}
	t.Cleanup(restart) // whatever happens, leave the runtime running
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("containerd did not exit within 30 s of SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitMetrics(t, exp, 10*time.Second, "runtime_up 0 with errors counted, the old pod still named", func(m string) bool {
		return value(m, up) == 0 && value(m, errs) > 0 && strings.Contains(m, fmt.Sprintf(`pod=%q`, before.Name()))
	})
	restart()
	after := c.RunPod(t, "shop", podName("after"), critest.PodOptions{})
	waitMetrics(t, exp, 40*time.Second, "runtime_up 1 and the new pod named", func(m string) bool { // the backoff may have reached 16 s
		return value(m, up) == 1 && strings.Contains(m, fmt.Sprintf(`pod=%q`, after.Name())) && strings.Contains(m, fmt.Sprintf(`pod=%q`, before.Name()))
	})
	exp.stop(t)
}

// waitMetrics polls the exporter until ok accepts its exposition.
func waitMetrics(t *testing.T, exp *exportProc, timeout time.Duration, what string, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := exp.metrics(t)
		if ok(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; stderr:\n%s", timeout, what, exp.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A runtime that starts after the exporter (a node's containerd coming up late) is found by the
// exporter's next probe and names its containers from then on.
func TestExportFindsARuntimeThatStartsLater(t *testing.T) {
	requireDocker(t)
	root := t.TempDir()
	exp := startExport(t, "--host=false", "--host-root", root)
	if strings.Contains(exp.metrics(t), "sockscope_runtime_up") {
		t.Fatal("a runtime is named before there is one under the host root")
	}
	// The runtime "starts": its socket appears where the probe looks.
	if err := os.MkdirAll(root+"/run", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testenv.DockerSocket(t), root+"/run/docker.sock"); err != nil {
		t.Fatal(err)
	}
	c := runHTTPD(t, "late-runtime")
	waitMetrics(t, exp, 45*time.Second, "the next probe to find Docker and name "+c.name, func(m string) bool {
		return value(m, fmt.Sprintf(`sockscope_runtime_up{endpoint="unix://%s/run/docker.sock",runtime="docker"}`, root)) == 1 &&
			strings.Contains(m, fmt.Sprintf(`container=%q`, c.name))
	})
	exp.stop(t)
}
