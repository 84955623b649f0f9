package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/deploy"
)

// A container started after the exporter is counted under its name, with its image and its
// compose labels in sockscope_container_info; the TIME_WAIT gauge equals ss in its netns; when it
// is removed its series go away and the kernel map shrinks back. A Docker container with the labels
// kubelet puts on the containers it makes through Docker (dockershim, cri-dockerd) is its pod's.
func TestExportNamesContainersAndFollowsThem(t *testing.T) {
	requireDocker(t)
	requirePrometheus(t)
	exp := startExport(t, "--host=false")
	prom := startPrometheus(t, scrapeJob{name: "sockscope", target: exp.addr})
	before := exp.metrics(t)
	entries := value(before, `sockscope_bpf_map_entries{map="counters"}`)
	tracked := value(before, `sockscope_bpf_map_entries{map="tracked"}`)

	c := newContainer(t, []string{"run", "-d",
		"--label", "com.docker.compose.project=shop", "--label", "com.docker.compose.service=web"},
		containerName("export"), httpdCmd...)
	c.waitListening(t, 8080)
	info := prom.waitFor(t, fmt.Sprintf(`sockscope_container_info{container=%q}`, c.name), 30*time.Second,
		func(s []sample) bool { return len(s) == 1 })[0].Metric
	for k, v := range map[string]string{"container_name": c.name, "container_id": c.shortID(), "image": testImage, "compose_project": "shop",
		"compose_service": "web", "namespace": "", "pod": "", "runtime": "docker", "host_network": "false"} {
		if info[k] != v {
			t.Errorf("sockscope_container_info %s=%q, want %q (%v)", k, info[k], v, info)
		}
	}
	kube := newContainer(t, []string{"run", "-d", "--label", "io.kubernetes.pod.namespace=prod", "--label", "io.kubernetes.pod.name=web-0",
		"--label", "io.kubernetes.container.name=web", "--label", "io.kubernetes.docker.type=container"},
		containerName("export-kube"), httpdCmd...)
	kinfo := prom.waitFor(t, `sockscope_container_info{container="prod/web-0"}`, 30*time.Second,
		func(s []sample) bool { return len(s) == 1 })[0].Metric
	for k, v := range map[string]string{"container_name": "web", "container_id": kube.shortID(), "namespace": "prod", "pod": "web-0"} {
		if kinfo[k] != v {
			t.Errorf("sockscope_container_info of a kubelet-made Docker container: %s=%q, want %q (%v)", k, kinfo[k], v, kinfo)
		}
	}
	success := fmt.Sprintf(`sockscope_tcp_connects_total{container=%q,result="success"}`, c.name)
	prom.waitFor(t, success, 30*time.Second, func(s []sample) bool { return len(s) == 1 && s[0].V == 0 })

	const n = 20
	c.wget(t, n)
	at := prom.scrapedAfter(t, success, time.Now())
	if got := prom.one(t, "increase("+success+"[10m])", at); !near(got, n) {
		t.Errorf("increase(%s) = %v, want %d (the wgets made in the container)", success, got, n)
	}
	pid := strconv.Itoa(c.pid(t))
	assertGaugesEqualSs(t, prom, c.name, "nsenter", "-t", pid, "-n", "ss", "-tanH")

	sh(t, "docker", "rm", "-f", c.name, kube.name)
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := exp.metrics(t)
		gone := !strings.Contains(m, fmt.Sprintf("container=%q", c.name))
		if gone && value(m, `sockscope_bpf_map_entries{map="counters"}`) == entries &&
			value(m, `sockscope_bpf_map_entries{map="tracked"}`) == tracked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after docker rm: series gone %v, counters %v (was %v), tracked %v (was %v)", gone,
				value(m, `sockscope_bpf_map_entries{map="counters"}`), entries, value(m, `sockscope_bpf_map_entries{map="tracked"}`), tracked)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Prometheus marks the series stale at the next scrape.
	prom.waitFor(t, fmt.Sprintf(`sockscope_container_info{container=%q}`, c.name), 10*time.Second,
		func(s []sample) bool { return len(s) == 0 })
	exp.stop(t)
}

// The incident behind the alert rules, in a real container: four local ports, tcp_tw_reuse off,
// a client that closes first until EADDRNOTAVAIL, then connects to a closed port. Against a real
// Prometheus scraping sockscope, every expression of deploy/ runs without error; every dashboard
// query returns data; the three alerts the incident should fire do, and the others
// (lost events, full maps, a runtime down) return nothing.
func TestDeployExpressionsRunAgainstPrometheus(t *testing.T) {
	requireDocker(t)
	requirePrometheus(t)
	exprs, err := deploy.Expressions()
	if err != nil {
		t.Fatal(err)
	}
	exp := startExport(t, "--syscalls", "--top-remotes", "5", "--bpf-stats")
	prom := startPrometheus(t, scrapeJob{name: "sockscope", target: exp.addr})
	c := newContainer(t, []string{"run", "-d", "--sysctl", "net.ipv4.ip_local_port_range=61000 61003",
		"--sysctl", "net.ipv4.tcp_tw_reuse=0", "-v", tcploadBin + ":/bin/tcpload:ro"}, containerName("incident"), httpdCmd...)
	c.waitListening(t, 8080)
	prom.waitFor(t, fmt.Sprintf(`sockscope_tcp_connects_total{container=%q,result="success"}`, c.name), 30*time.Second,
		func(s []sample) bool { return len(s) == 1 })
	out := sh(t, "docker", "exec", c.name, "tcpload", "connect", "-addr", "127.0.0.1:8080", "-n", "7")
	if !strings.Contains(out, `"ok":4`) || !strings.Contains(out, `"EADDRNOTAVAIL":3`) {
		t.Fatalf("port exhaustion in %s: %s", c.name, out)
	}
	// 40 refused connects: with the 8 above, enough attempts in 5 minutes for the error-ratio
	// alert's floor (0.1/s).
	out = sh(t, "docker", "exec", c.name, "tcpload", "connect", "-addr", "127.0.0.1:9", "-n", "40")
	if !strings.Contains(out, `"ECONNREFUSED":40`) {
		t.Fatalf("refused connects in %s: %s", c.name, out)
	}
	// Enough samples for rate() over one minute: a few scrapes after the traffic.
	prom.scrapedAfter(t, fmt.Sprintf(`sockscope_tcp_connects_total{container=%q,result="ECONNREFUSED"}`, c.name), time.Now().Add(3*time.Second))

	fire := map[string]bool{"SockscopeLocalPortExhaustion": true, "SockscopeTimeWaitPileUp": true, "SockscopeConnectErrors": true}
	fired := map[string]bool{}
	for _, e := range exprs {
		res, err := prom.tryQuery(e.Query, 0)
		if err != nil {
			t.Errorf("%s %q: %v", e.Source, e.Name, err)
			continue
		}
		switch {
		case e.Source == deploy.Dashboard && len(res) == 0:
			t.Errorf("dashboard panel %q returns no data: %s", e.Name, e.Query)
		case e.Source == deploy.Rules && fire[e.Name]:
			for _, s := range res {
				if s.Metric["container"] == c.name {
					fired[e.Name] = true
				}
			}
			if !fired[e.Name] {
				t.Errorf("alert %s does not fire for %s: %+v\n%s", e.Name, c.name, res, e.Query)
			}
		case e.Source == deploy.Rules && len(res) > 0:
			t.Errorf("alert %s fires without its incident: %+v\n%s", e.Name, res, e.Query)
		}
	}
	if len(fired) != len(fire) {
		t.Errorf("alerts fired: %v, want %v", fired, fire)
	}
	exp.stop(t)
}
