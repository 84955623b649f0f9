package main

// More namespaces than --max-netns: the exporter counts what fits, says how many wait, and counts
// a waiting one as soon as a counted one leaves; names never collide.

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

// waitMetrics polls the exposition until ok holds, or fails after within.
func (e *exportProc) waitMetrics(t *testing.T, within time.Duration, what string, ok func(string) bool) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		m := e.metrics(t)
		if ok(m) {
			return m, time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v; the exposition says namespaces %v, untracked %v", what, within,
				value(m, "sockscope_namespaces"), value(m, "sockscope_namespaces_untracked"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func counted(m, name string) bool { return strings.Contains(m, `container_name="`+name+`"`) }

// The host and three containers, room for two: the host and the first container are counted,
// two wait, and sockscope_namespaces_untracked says so. The counted container stops: within 2 s
// the container that waited longest is counted. (Docker containers that already ran get room of
// their own: --max-netns is 2 plus them.)
func TestExportCountsWhatFitsAndSaysWhatWaits(t *testing.T) {
	requireDocker(t)
	sock := testenv.DockerSocket(t)
	others := len(lines(sh(t, "docker", "ps", "-q")))
	limit := 2 + others
	exp := startExport(t, "--runtime-endpoint", "unix://"+sock, "--max-netns", strconv.Itoa(limit))
	exp.waitMetrics(t, 5*time.Second, "the running containers", func(m string) bool {
		return value(m, "sockscope_namespaces") == float64(1+others)
	})
	var cs []container
	for i := range 3 {
		c := newContainer(t, []string{"run", "-d"}, containerName(fmt.Sprintf("room%d", i)), testImage, "sleep", "3600")
		cs = append(cs, c)
		exp.waitMetrics(t, 5*time.Second, "container "+c.name+" seen", func(m string) bool {
			return value(m, "sockscope_namespaces")+value(m, "sockscope_namespaces_untracked") == float64(2+others+i)
		})
	}
	m := exp.metrics(t)
	if value(m, "sockscope_namespaces") != float64(limit) || value(m, "sockscope_namespaces_untracked") != 2 ||
		!counted(m, cs[0].name) || counted(m, cs[1].name) || counted(m, cs[2].name) {
		t.Fatalf("with room for %d: namespaces %v, untracked %v; counted: %v %v %v (want the first only)", limit,
			value(m, "sockscope_namespaces"), value(m, "sockscope_namespaces_untracked"), counted(m, cs[0].name), counted(m, cs[1].name), counted(m, cs[2].name))
	}
	if v := value(m, `sockscope_bpf_map_entries{map="tracked"}`); v != float64(limit) {
		t.Errorf("the tracked map holds %v, want %d: full", v, limit)
	}
	if err := exec.Command("docker", "rm", "-f", cs[0].name).Run(); err != nil {
		t.Fatal(err)
	}
	m, took := exp.waitMetrics(t, 2*time.Second, "a waiting container counted", func(m string) bool {
		return counted(m, cs[1].name)
	})
	t.Logf("%s counted %v after %s went", cs[1].name, took.Round(time.Millisecond), cs[0].name)
	if value(m, "sockscope_namespaces") != float64(limit) || value(m, "sockscope_namespaces_untracked") != 1 || counted(m, cs[2].name) {
		t.Errorf("after the stop: namespaces %v, untracked %v, the last still waiting: %v", value(m, "sockscope_namespaces"),
			value(m, "sockscope_namespaces_untracked"), !counted(m, cs[2].name))
	}
	if strings.Contains(exp.stderr.String(), "limit is") {
		t.Errorf("stderr:\n%s", exp.stderr.String())
	}
	exp.stop(t)
}

// A Docker container named host: its series are its own, the host keeps "host", and the
// registry refuses nothing (a duplicate series would be dropped from every scrape).
func TestExportNamesAContainerCalledHostApart(t *testing.T) {
	requireDocker(t)
	name := "host"
	if out, err := exec.Command("docker", "container", "inspect", name).CombinedOutput(); err == nil {
		t.Fatalf("a container named host already runs here: %s", out)
	}
	c := newContainer(t, []string{"run", "-d"}, name, testImage, "sleep", "3600")
	pid := strings.TrimSpace(sh(t, "docker", "inspect", "-f", "{{.State.Pid}}", c.name))
	ino := strings.TrimSpace(sh(t, "stat", "-L", "-c", "%i", "/proc/"+pid+"/ns/net"))
	exp := startExport(t, "--runtime-endpoint", "unix://"+testenv.DockerSocket(t))
	want := fmt.Sprintf(`sockscope_tcp_retransmits_total{container="host (netns %s)",namespace="",pod=""}`, ino)
	m, _ := exp.waitMetrics(t, 5*time.Second, "the container named host", func(m string) bool { return value(m, want) >= 0 })
	if value(m, `sockscope_tcp_retransmits_total{container="host",namespace="",pod=""}`) < 0 {
		t.Errorf("the host lost its series:\n%s", m)
	}
	if strings.Count(m, `sockscope_tcp_retransmits_total{container="host`) != 2 {
		t.Errorf("want two retransmit series, the host's and the container's")
	}
	if !strings.Contains(exp.stderr.String(), `container="host (netns `+ino+`)"`) || strings.Contains(exp.stderr.String(), "collected before") {
		t.Errorf("stderr:\n%s", exp.stderr.String())
	}
	exp.stop(t)
}
