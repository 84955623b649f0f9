package critest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/sockscope/sockscope/internal/testenv"
)

var update = flag.Bool("update", false, "capture testdata/containerd-*.json from the CRI runtime (root, bash .ci/cri.sh)")

// The fixtures: real CRI responses of containerd 1.6 (Debian's 1.6.20, as .ci/cri.sh runs it), in
// protojson, so a test can protojson.Unmarshal them into the runtime/v1 response types. The -info
// files hold the verbose Info["info"] document of the status beside them, indented, for reading.
const fixturePrefix = "testdata/containerd-1.6-"

var fixtureFiles = []string{
	"version.json",
	"podsandboxstatus-pod.json", "podsandboxstatus-pod-info.json",
	"podsandboxstatus-hostnetwork.json", "podsandboxstatus-hostnetwork-info.json",
	"containerstatus.json", "containerstatus-info.json",
	"listpodsandbox.json", "listcontainers.json",
}

// writeFixture writes a response as indented protojson. EmitDefaultValues: zero values are
// meaningful here (state SANDBOX_READY and namespace mode POD are 0) and would vanish otherwise.
// protojson's own output varies its whitespace on purpose; json.Indent makes it stable.
func writeFixture(t *testing.T, name string, m proto.Message) {
	t.Helper()
	raw, err := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	writeJSON(t, name, raw)
}

func writeJSON(t *testing.T, name string, raw []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	buf.WriteByte('\n')
	if err := os.WriteFile(fixturePrefix+name, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFixture(t *testing.T, name string, m proto.Message) {
	t.Helper()
	raw, err := os.ReadFile(fixturePrefix + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(raw, m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestFixtures checks what the lead's code may rely on in the committed containerd responses; with
// -update it first captures them again from a real pod shop/web-0 (containers web and sidecar)
// and a hostNetwork pod kube-system/node-agent (container agent).
func TestFixtures(t *testing.T) {
	if *update {
		capture(t)
	}

	var pod, host runtimeapi.PodSandboxStatusResponse
	readFixture(t, "podsandboxstatus-pod.json", &pod)
	readFixture(t, "podsandboxstatus-hostnetwork.json", &host)
	var ctr runtimeapi.ContainerStatusResponse
	readFixture(t, "containerstatus.json", &ctr)

	podInfo, err := ParseInfo(pod.Info)
	if err != nil {
		t.Fatal(err)
	}
	if podInfo.Pid <= 0 || !regexp.MustCompile(`^/var/run/netns/cni-[0-9a-f-]+$`).MatchString(podInfo.NamespacePath("network")) {
		t.Errorf("pod: pid %d, netns path %q; want a pid and /var/run/netns/cni-...", podInfo.Pid, podInfo.NamespacePath("network"))
	}
	hostInfo, err := ParseInfo(host.Info)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range hostInfo.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			t.Errorf("hostNetwork pod: the spec has a network namespace (%+v); want none (the host's)", ns)
		}
	}
	if hostInfo.Pid <= 0 {
		t.Error("hostNetwork pod: no pid")
	}
	ctrInfo, err := ParseInfo(ctr.Info)
	if err != nil {
		t.Fatal(err)
	}
	// A container joins its sandbox's namespaces through the sandbox process.
	if want := "/proc/" + strconv.Itoa(podInfo.Pid) + "/ns/net"; ctrInfo.NamespacePath("network") != want {
		t.Errorf("container: netns path %q, want %q", ctrInfo.NamespacePath("network"), want)
	}
	// ContainerStatus names the image by its tag, ListContainers by what the kubelet sent (the ID).
	if ctr.Status.Image.GetImage() != Image || !strings.HasPrefix(ctr.Status.ImageRef, "sha256:") {
		t.Errorf("container status: image %q, ref %q", ctr.Status.Image.GetImage(), ctr.Status.ImageRef)
	}
	var list runtimeapi.ListContainersResponse
	readFixture(t, "listcontainers.json", &list)
	for _, c := range list.Containers {
		if !strings.HasPrefix(c.Image.GetImage(), "sha256:") || c.Image.GetImage() != c.ImageRef {
			t.Errorf("ListContainers %s: image %q, ref %q; want the image ID in both", c.Metadata.Name, c.Image.GetImage(), c.ImageRef)
		}
	}
}

func capture(t *testing.T) {
	testenv.Root(t)
	c := Dial(t, Endpoint(t))
	cx, cancel := ctx()
	defer cancel()
	v, err := c.Runtime.Version(cx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "containerd" || !strings.HasPrefix(v.RuntimeVersion, "1.6.") {
		t.Fatalf("-update: the fixtures are containerd 1.6's; the runtime is %s %s", v.RuntimeName, v.RuntimeVersion)
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFixture(t, "version.json", v)

	// Log directories where a kubelet puts them, so the fixtures show realistic paths.
	logDir := func(ns, name, uid string) string {
		d := filepath.Join("/var/log/pods", ns+"_"+name+"_"+uid)
		t.Cleanup(func() {
			os.RemoveAll(d)
			os.Remove("/var/log/pods") // only when empty: it was not there before
		})
		return d
	}
	const podUID, hostUID = "0c6a5b0e-3f4e-4d7a-9c1b-2a8f5e6d7c01", "7e1f2d3c-4b5a-4968-8776-655443322110"
	pod := c.RunPod(t, "shop", "web-0", PodOptions{
		UID:          podUID,
		Labels:       map[string]string{"app": "web"},
		LogDirectory: logDir("shop", "web-0", podUID),
	})
	web := pod.Start(t, "web", Image, "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www")
	pod.Start(t, "sidecar", Image, "sleep", "3600")
	host := c.RunPod(t, "kube-system", "node-agent", PodOptions{
		UID:          hostUID,
		HostNetwork:  true,
		LogDirectory: logDir("kube-system", "node-agent", hostUID),
	})
	host.Start(t, "agent", Image)

	for _, f := range []struct {
		name   string
		status proto.Message
	}{
		{"podsandboxstatus-pod", pod.Status(t)},
		{"podsandboxstatus-hostnetwork", host.Status(t)},
		{"containerstatus", web.Status(t)},
	} {
		writeFixture(t, f.name+".json", f.status)
		var info map[string]string
		switch s := f.status.(type) {
		case *runtimeapi.PodSandboxStatusResponse:
			info = s.Info
		case *runtimeapi.ContainerStatusResponse:
			info = s.Info
		}
		writeJSON(t, f.name+"-info.json", []byte(info["info"]))
	}

	// The lists, cut down to these two pods: other tests' pods may be running.
	ours := map[string]bool{pod.ID: true, host.ID: true}
	pods, err := c.Runtime.ListPodSandbox(cx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keptPods := pods.Items[:0]
	for _, p := range pods.Items {
		if ours[p.Id] {
			keptPods = append(keptPods, p)
		}
	}
	pods.Items = keptPods
	writeFixture(t, "listpodsandbox.json", pods)
	ctrs, err := c.Runtime.ListContainers(cx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	kept := ctrs.Containers[:0]
	for _, ct := range ctrs.Containers {
		if ours[ct.PodSandboxId] {
			kept = append(kept, ct)
		}
	}
	ctrs.Containers = kept
	writeFixture(t, "listcontainers.json", ctrs)
	t.Logf("wrote %s{%s}", fixturePrefix, strings.Join(fixtureFiles, ","))
}
