package main

// More namespaces than --max-netns: the exporter counts what fits, says how many wait, and counts
// a waiting one as soon as a counted one leaves; names never collide.

import (
	"fmt"
	"os/exec"
	"path/filepath"
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

// One namespace calls 40,000 syscall numbers the kernel does not have, to fill the shared syscall
// maps. It cannot: numbers no architecture has share one row, so its calls are all counted, in
// 25 series, and a second namespace's calls, made after, are counted exactly too. Nothing is
// dropped, and the exporter says so.
func TestExportSyscallsSurviveAFloodOfInvalidNumbers(t *testing.T) {
	requireTracing(t)
	a, b := newNetns(t), newNetns(t)
	exp := startExport(t, noDocker, "--host=false", "--netns", "a="+a.path, "--netns", "b="+b.path, "--max-netns", "2",
		"--syscalls", "--syscalls.top", "1000")
	dir := t.TempDir()
	sh(t, "ip", "netns", "exec", a.name, sysloadBin, "-dir", filepath.Join(dir, "a"), "-invalid", "40000")
	sh(t, "ip", "netns", "exec", b.name, sysloadBin, "-dir", filepath.Join(dir, "b"), "-fsync", "300")
	m := exp.metrics(t)
	// sysload calls 1000, 1001, ... 40999: 1000-1023 are rows of their own (no x86_64 or arm64
	// syscall has those numbers, but they are below the kernel side's table), the rest one row.
	invalid, series := 0.0, 0
	for _, line := range strings.Split(m, "\n") {
		rest, ok := strings.CutPrefix(line, `sockscope_syscalls_total{container="a",namespace="",pod="",syscall="`)
		if !ok {
			continue
		}
		name, v, _ := strings.Cut(rest, `"} `)
		if name == "invalid" || strings.HasPrefix(name, "syscall_10") {
			n, _ := strconv.ParseFloat(v, 64)
			invalid += n
			series++
		}
	}
	if invalid != 40000 || series != 25 {
		t.Errorf("the flood counted %v calls in %d series, want 40000 in 25", invalid, series)
	}
	if v := value(m, `sockscope_syscalls_total{container="b",namespace="",pod="",syscall="fsync"}`); v != 300 {
		t.Errorf("fsync in b after the flood = %v, want 300", v)
	}
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "sockscope_syscalls_dropped_total{") && !strings.HasSuffix(line, " 0") {
			t.Errorf("dropped: %s", line)
		}
	}
	if !strings.Contains(m, "sockscope_syscalls_dropped_total{") {
		t.Errorf("no sockscope_syscalls_dropped_total series")
	}
	exp.stop(t)
}
