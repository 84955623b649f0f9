package containers

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func readInfo(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cri", name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// TestParseSandboxInfo reads the PID and the pinned network namespace from each runtime's verbose
// sandbox status.
func TestParseSandboxInfo(t *testing.T) {
	for _, c := range []struct {
		file      string
		pid       int
		netnsPath string
		optional  bool // captured on a CI machine by internal/critest; absent in a fresh checkout only if never captured
	}{
		// CRI-O drops the infra container by default: no PID, only the pinned namespace.
		{file: "crio-1.30-sandbox-spoofed.json", netnsPath: "/var/run/netns/0f6c2a8e-5d1b-4c7e-9a3f-2b8d6e4c1a90"},
		// A hostNetwork pod still has a pinned file: a bind mount of the host's namespace.
		{file: "crio-1.30-sandbox-hostnetwork.json", netnsPath: "/var/run/netns/7a1e9c3d-0b2f-4e6a-8d5c-3f9b1a7e2c40"},
		// shareProcessNamespace keeps the infra container, and its PID.
		{file: "crio-1.30-sandbox-infra.json", pid: 41234, netnsPath: "/var/run/netns/5b7d9f1a-2c4e-4a6b-8e0d-1f3a5c7e9b20"},
	} {
		t.Run(c.file, func(t *testing.T) {
			got := parseSandboxInfo(readInfo(t, c.file))
			if got.pid != c.pid || got.netnsPath != c.netnsPath {
				t.Errorf("got pid %d, netns %q; want %d, %q", got.pid, got.netnsPath, c.pid, c.netnsPath)
			}
		})
	}
	// containerd's real answers (Debian's 1.6): a PID, and for a pod its CNI namespace; a
	// hostNetwork pod has no network namespace entry at all.
	matches, _ := filepath.Glob("testdata/cri/containerd-*.json")
	if len(matches) == 0 {
		t.Fatal("no containerd fixtures in testdata/cri")
	}
	for _, m := range matches {
		name := filepath.Base(m)
		got := parseSandboxInfo(readInfo(t, name))
		if got.pid <= 0 {
			t.Errorf("%s: pid %d", name, got.pid)
		}
		host := filepath.Base(name) == "containerd-1.6-sandbox-hostnetwork.json"
		if host != (got.netnsPath == "") {
			t.Errorf("%s: netns path %q", name, got.netnsPath)
		}
	}

	// Keys other than "info" and shapes that are not JSON are tolerated.
	if got := parseSandboxInfo(map[string]string{"other": `{"pid": 7}`, "info": "not json"}); got.pid != 7 {
		t.Errorf("pid under another key: got %d, want 7", got.pid)
	}
	if got := parseSandboxInfo(nil); got != (sandboxInfo{}) {
		t.Errorf("nil map: %+v", got)
	}
}

func TestEventsSafe(t *testing.T) {
	for _, c := range []struct {
		kind, version string
		want          bool
	}{
		{"containerd", "1.6.20~ds1", false}, // Unimplemented
		{"containerd", "v1.7.24", false},    // one channel for all subscribers: would take the kubelet's events
		{"containerd", "v2.0.0", true},
		{"containerd", "2.1.4", true},
		{"cri-o", "1.27.3", false},
		{"cri-o", "1.28.0", true},
		{"cri-o", "1.31.2", true},
		{"cri-dockerd", "0.3.15", false},
		{"cri", "9.9.9", false},
	} {
		if got := eventsSafe(c.kind, c.version); got != c.want {
			t.Errorf("eventsSafe(%s, %s) = %v, want %v", c.kind, c.version, got, c.want)
		}
	}
}

func TestHostPath(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "run/netns"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &CRI{hostRoot: root}
	// A DaemonSet mounts the host's /run: /var/run paths are read there.
	if got, want := c.hostPath("/var/run/netns/x"), filepath.Join(root, "run/netns/x"); got != want {
		t.Errorf("hostPath(/var/run/netns/x) = %q, want %q", got, want)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/run/netns"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, want := c.hostPath("/var/run/netns/x"), filepath.Join(root, "var/run/netns/x"); got != want {
		t.Errorf("with var/run present: hostPath = %q, want %q", got, want)
	}
	if got := (&CRI{}).hostPath("/var/run/netns/x"); got != "/var/run/netns/x" {
		t.Errorf("without a host root: %q", got)
	}
}
