package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A container started after the exporter is counted under its name, with its image and its
// compose and Kubernetes labels in sockscope_container_info; the TIME_WAIT gauge equals ss in its
// netns; when it is removed its series go away and the kernel map shrinks back.
func TestExportNamesContainersAndFollowsThem(t *testing.T) {
	requireDocker(t)
	requirePrometheus(t)
	exp := startExport(t, "--host=false")
	prom := startPrometheus(t, scrapeJob{name: "sockscope", target: exp.addr})
	before := exp.metrics(t)
	entries := value(before, `sockscope_bpf_map_entries{map="counters"}`)
	tracked := value(before, `sockscope_bpf_map_entries{map="tracked"}`)

	c := newContainer(t, []string{"run", "-d",
		"--label", "com.docker.compose.project=shop", "--label", "com.docker.compose.service=web",
		"--label", "io.kubernetes.pod.namespace=prod", "--label", "io.kubernetes.pod.name=web-0"},
		containerName("export"), httpdCmd...)
	c.waitListening(t, 8080)
	info := prom.waitFor(t, fmt.Sprintf(`sockscope_container_info{container=%q}`, c.name), 30*time.Second,
		func(s []sample) bool { return len(s) == 1 })[0].Metric
	for k, v := range map[string]string{"container_id": c.shortID(), "image": testImage, "compose_project": "shop",
		"compose_service": "web", "k8s_namespace": "prod", "k8s_pod": "web-0"} {
		if info[k] != v {
			t.Errorf("sockscope_container_info %s=%q, want %q (%v)", k, info[k], v, info)
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

	sh(t, "docker", "rm", "-f", c.name)
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
