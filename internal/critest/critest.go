// Package critest drives a Kubernetes container runtime through CRI (k8s.io/cri-api runtime/v1 over
// gRPC on a unix socket) the way a kubelet does, so that tests can create real pods and containers
// and look at their network namespaces. It is for tests only: every helper takes a testing.TB, fails
// the test on an error and registers the cleanup of what it creates.
//
// The runtime is the standalone containerd that .ci/cri.sh starts; set SOCKSCOPE_TEST_CRI_ENDPOINT to
// use another one (a path or unix:// URL). Tests of what only containerd 2 has (CRI's event stream)
// use Containerd2Endpoint instead: the containerd 2.x of .ci/cri2.sh, or
// SOCKSCOPE_TEST_CRI2_ENDPOINT. Tests get a client with
//
//	c := critest.Dial(t, critest.Endpoint(t))
//	pod := c.RunPod(t, "shop", "web-0", critest.PodOptions{})
//	web := pod.Start(t, "web", critest.Image, "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www")
//	out, _, code := web.Exec(t, "wget", "-q", "-O-", "http://127.0.0.1:8080/")
package critest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/sockscope/sockscope/internal/testenv"
)

const (
	// EndpointEnv names the environment variable that points the tests at a CRI socket.
	EndpointEnv = "SOCKSCOPE_TEST_CRI_ENDPOINT"
	// DefaultEndpoint is the socket of the containerd that .ci/cri.sh starts.
	DefaultEndpoint = "/run/sockscope-cri/containerd.sock"
	// Containerd2EndpointEnv names the environment variable that points the tests at a containerd
	// 2.x CRI socket.
	Containerd2EndpointEnv = "SOCKSCOPE_TEST_CRI2_ENDPOINT"
	// DefaultContainerd2Endpoint is the socket of the containerd 2.x that .ci/cri2.sh starts.
	DefaultContainerd2Endpoint = "/run/sockscope-cri2/containerd.sock"
	// Image is the offline busybox image that .ci/cri.sh and .ci/cri2.sh import (sh, httpd, wget,
	// nc, sleep, ...; /www/index.html holds "ok"). Its default command sleeps, so a container
	// started without a command stays up.
	Image = "docker.io/sockscope-test/busybox:latest"
	// PauseImage is the sandbox image named in .ci/cri.sh's config: the same layer as Image, but an
	// image (and ID) of its own, as a pause image is in a cluster.
	PauseImage = "docker.io/sockscope-test/pause:latest"

	// callTimeout bounds every CRI call: a runtime that hangs should fail the test, not time out
	// the whole package.
	callTimeout = 60 * time.Second
)

// The labels a kubelet puts on every sandbox and container it creates; runtimes and tools (and
// sockscope) name pods and containers by them.
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
)

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	// The same wording and rule as internal/testenv: in CI a missing prerequisite fails.
	if testenv.InCI() {
		t.Fatalf("prerequisite missing (CI=true, so this fails instead of skipping): "+format, args...)
	}
	t.Skipf("skipped: "+format, args...)
}

// socketPath turns a CRI endpoint as kubelets and crictl spell it (unix:///run/x.sock) or a bare
// path into a path.
func socketPath(endpoint string) string {
	return strings.TrimPrefix(endpoint, "unix://")
}

// Endpoint returns the path of the CRI socket the tests use ($SOCKSCOPE_TEST_CRI_ENDPOINT, else
// DefaultEndpoint), requiring that a runtime answers CRI's Version there. A socket that answers
// gRPC without CRI (Docker's own containerd) counts as missing, too.
func Endpoint(t testing.TB) string {
	t.Helper()
	return endpoint(t, EndpointEnv, DefaultEndpoint, "bash .ci/cri.sh", nil)
}

// Containerd2Endpoint is Endpoint for the tests that need containerd 2 or later
// ($SOCKSCOPE_TEST_CRI2_ENDPOINT, else DefaultContainerd2Endpoint): the first containerd whose CRI
// event stream (GetContainerEvents) reaches every subscriber (1.6 does not implement it, 1.7 hands
// each event to one subscriber only). Another runtime there counts as missing.
func Containerd2Endpoint(t testing.TB) string {
	t.Helper()
	return endpoint(t, Containerd2EndpointEnv, DefaultContainerd2Endpoint, "bash .ci/cri2.sh", func(v *runtimeapi.VersionResponse) error {
		if v.RuntimeName != "containerd" || majorVersion(v.RuntimeVersion) < 2 {
			return fmt.Errorf("it is %s %s, not containerd 2 or later", v.RuntimeName, v.RuntimeVersion)
		}
		return nil
	})
}

// majorVersion reads a runtime version as CRI reports it ("v2.4.2", "1.6.20~ds1",
// "2.4.2+unknown"): its major number, or 0.
func majorVersion(v string) int {
	major, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0
	}
	return n
}

// endpoint finds the socket in $env or at def and requires a CRI runtime there that want (when not
// nil) accepts; start names the script that starts the default one.
func endpoint(t testing.TB, env, def, start string, want func(*runtimeapi.VersionResponse) error) string {
	t.Helper()
	sock := def
	if e := os.Getenv(env); e != "" {
		sock = socketPath(e)
	}
	if _, err := os.Stat(sock); err != nil {
		missing(t, "needs a CRI runtime at %s (start one with: %s, or set %s): %v", sock, start, env, err)
		return sock
	}
	v, err := version(sock)
	if err == nil && want != nil {
		err = want(v)
	}
	if err != nil {
		missing(t, "needs a CRI runtime at %s (start one with: %s, or set %s): %v", sock, start, env, err)
		return sock
	}
	t.Logf("CRI runtime at %s: %s %s (CRI %s)", sock, v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)
	return sock
}

func version(sock string) (*runtimeapi.VersionResponse, error) {
	conn, err := dial(sock)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// No WaitForReady: a socket nobody listens on (a daemon that died) fails at once with
	// Unavailable instead of after the timeout; a hung daemon still fails after 5 s.
	return runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
}

func dial(sock string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The kubelet's limit: verbose statuses and long lists exceed gRPC's default of 4 MiB.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
}

// Client is a connection to a CRI runtime. Runtime and Images are the raw CRI services, for calls
// the helpers below do not wrap.
type Client struct {
	Endpoint string
	Runtime  runtimeapi.RuntimeServiceClient
	Images   runtimeapi.ImageServiceClient
}

// Dial connects to the CRI socket at endpoint (a path or unix:// URL) and closes the connection when
// the test ends. It does not check that the runtime answers: Endpoint does.
func Dial(t testing.TB, endpoint string) *Client {
	t.Helper()
	sock := socketPath(endpoint)
	conn, err := dial(sock)
	if err != nil {
		t.Fatalf("critest: dial %s: %v", sock, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Client{
		Endpoint: sock,
		Runtime:  runtimeapi.NewRuntimeServiceClient(conn),
		Images:   runtimeapi.NewImageServiceClient(conn),
	}
}

// ctx is the context of one CRI call. It does not derive from t.Context(), which is already
// cancelled when cleanups run, and cleanups must still reach the runtime.
func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

// PodOptions are the knobs of RunPod. The zero value is an ordinary pod with its own network
// namespace on the CNI network of .ci/cri.sh.
type PodOptions struct {
	// HostNetwork runs the pod in the host's network namespace (hostNetwork: true).
	HostNetwork bool
	// UID is the pod's metadata.uid; a random UUID when empty, so that names can be reused.
	UID string
	// Labels and Annotations are the pod's own; the kubelet's io.kubernetes.pod.* labels are added.
	Labels, Annotations map[string]string
	// LogDirectory is the pod's log directory (a kubelet's is
	// /var/log/pods/<namespace>_<name>_<uid>). Empty: one in the test's temporary directory, removed
	// with it. RunPod creates it; a directory given here is left for the test to remove.
	LogDirectory string
}

// Pod is a running pod sandbox.
type Pod struct {
	c      *Client
	ID     string
	Config *runtimeapi.PodSandboxConfig

	once sync.Once
}

// Namespace, Name and UID are the pod's metadata.
func (p *Pod) Namespace() string { return p.Config.Metadata.Namespace }
func (p *Pod) Name() string      { return p.Config.Metadata.Name }
func (p *Pod) UID() string       { return p.Config.Metadata.Uid }

func merge(own map[string]string, add map[string]string) map[string]string {
	m := make(map[string]string, len(own)+len(add))
	for k, v := range own {
		m[k] = v
	}
	for k, v := range add {
		m[k] = v
	}
	return m
}

// SandboxConfig is the PodSandboxConfig a kubelet (cgroupfs driver) sends for the pod
// namespace/name with that UID and log directory: metadata, the io.kubernetes.pod.* labels, the
// cgroup parent and the namespace options (an empty hostname for a hostNetwork pod, which shares
// the host's UTS namespace).
func SandboxConfig(namespace, name, uid, logDir string, opts PodOptions) *runtimeapi.PodSandboxConfig {
	netMode := runtimeapi.NamespaceMode_POD
	hostname := name
	if opts.HostNetwork {
		netMode = runtimeapi.NamespaceMode_NODE
		// A kubelet leaves the hostname empty for hostNetwork pods: the pod shares the host's UTS
		// namespace, and with a hostname runc fails ("unable to set hostname without a private
		// UTS namespace").
		hostname = ""
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: uid, Attempt: 0},
		Hostname: hostname,
		Labels: merge(opts.Labels, map[string]string{
			LabelPodName:      name,
			LabelPodNamespace: namespace,
			LabelPodUID:       uid,
		}),
		Annotations:  merge(opts.Annotations, map[string]string{"kubernetes.io/config.source": "api"}),
		LogDirectory: logDir,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/besteffort/pod" + uid,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: netMode,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

// NewUID returns a random pod UID (a version 4 UUID).
func NewUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// RunPod runs a pod sandbox named namespace/name, with the metadata, labels, log directory, cgroup
// parent and namespace options a kubelet (cgroupfs driver) would give it, and stops and removes it
// (with its containers) when the test ends.
func (c *Client) RunPod(t testing.TB, namespace, name string, opts PodOptions) *Pod {
	t.Helper()
	uid := opts.UID
	if uid == "" {
		uid = NewUID()
	}
	// The kubelet's layout, <namespace>_<name>_<uid>/<container>/<restart>.log, by default in the
	// test's temporary directory, which is removed after the pod (cleanups run last-in, first-out).
	logDir := opts.LogDirectory
	if logDir == "" {
		logDir = filepath.Join(t.TempDir(), namespace+"_"+name+"_"+uid)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatalf("critest: %v", err)
	}
	cfg := SandboxConfig(namespace, name, uid, logDir, opts)
	cgroupParent := cfg.Linux.CgroupParent
	cx, cancel := ctx()
	defer cancel()
	resp, err := c.Runtime.RunPodSandbox(cx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("critest: RunPodSandbox %s/%s: %v", namespace, name, err)
	}
	p := &Pod{c: c, ID: resp.PodSandboxId, Config: cfg}
	t.Cleanup(func() {
		p.remove(t)
		// runc removes the containers' cgroups, a kubelet the pod's: do the kubelet's part, so
		// that runs leave no empty kubepods/besteffort/pod<uid> directories behind.
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent)
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	})
	return p
}

// Remove stops and removes the pod and its containers now (it is also done when the test ends).
func (p *Pod) Remove(t testing.TB) {
	t.Helper()
	p.remove(t)
}

func (p *Pod) remove(t testing.TB) {
	t.Helper()
	p.once.Do(func() {
		cx, cancel := ctx()
		defer cancel()
		// StopPodSandbox kills the containers and tears down the network; RemovePodSandbox removes
		// the containers, too. NotFound: the test removed it through the raw API already.
		if _, err := p.c.Runtime.StopPodSandbox(cx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.ID}); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("critest: StopPodSandbox %s (%s/%s): %v", p.ID, p.Namespace(), p.Name(), err)
		}
		if _, err := p.c.Runtime.RemovePodSandbox(cx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.ID}); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("critest: RemovePodSandbox %s (%s/%s): %v", p.ID, p.Namespace(), p.Name(), err)
		}
	})
}

// Status returns the pod's verbose status: the CRI status and the runtime's Info map (on containerd,
// Info["info"] is a JSON document; see ParseInfo).
func (p *Pod) Status(t testing.TB) *runtimeapi.PodSandboxStatusResponse {
	t.Helper()
	cx, cancel := ctx()
	defer cancel()
	resp, err := p.c.Runtime.PodSandboxStatus(cx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.ID, Verbose: true})
	if err != nil {
		t.Fatalf("critest: PodSandboxStatus %s: %v", p.ID, err)
	}
	return resp
}

// Info is the part of containerd's verbose Info["info"] document (pod sandboxes and containers alike)
// that names the process and its namespaces.
type Info struct {
	Pid         int `json:"pid"`
	RuntimeSpec struct {
		Linux struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path,omitempty"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"runtimeSpec"`
}

// NamespacePath returns the path the runtime spec gives the namespace of the type ("network",
// "pid", ...): "" when the spec joins no existing namespace of that type (it creates one, or, when
// the type is missing, shares the host's).
func (i *Info) NamespacePath(typ string) string {
	for _, ns := range i.RuntimeSpec.Linux.Namespaces {
		if ns.Type == typ {
			return ns.Path
		}
	}
	return ""
}

// ParseInfo decodes a verbose Info map as containerd writes it.
func ParseInfo(info map[string]string) (*Info, error) {
	raw, ok := info["info"]
	if !ok {
		return nil, errors.New(`verbose status has no "info" key (not containerd?)`)
	}
	var i Info
	if err := json.Unmarshal([]byte(raw), &i); err != nil {
		return nil, fmt.Errorf("verbose info: %w", err)
	}
	return &i, nil
}

// Info returns the pod's parsed verbose info.
func (p *Pod) Info(t testing.TB) *Info {
	t.Helper()
	i, err := ParseInfo(p.Status(t).Info)
	if err != nil {
		t.Fatalf("critest: pod %s: %v", p.ID, err)
	}
	return i
}

// Pid returns the host pid of the sandbox's process (the pause process).
func (p *Pod) Pid(t testing.TB) int {
	t.Helper()
	pid := p.Info(t).Pid
	if pid <= 0 {
		t.Fatalf("critest: pod %s: verbose info has no pid", p.ID)
	}
	return pid
}

// NetNS returns the inode of the pod's network namespace, read through its sandbox process.
func (p *Pod) NetNS(t testing.TB) uint64 {
	t.Helper()
	ino, err := NetNSOfPid(p.Pid(t))
	if err != nil {
		t.Fatalf("critest: pod %s: %v", p.ID, err)
	}
	return ino
}

// NetNSOfPid returns the inode of the network namespace of a process.
func NetNSOfPid(pid int) (uint64, error) {
	return NetNSOfPath("/proc/" + strconv.Itoa(pid) + "/ns/net")
}

// NetNSOfPath returns the inode of the network namespace at a path: /proc/PID/ns/net or a bind mount
// such as /var/run/netns/cni-....
func NetNSOfPath(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("netns: %w", err)
	}
	return st.Ino, nil
}

// HostNetNS returns the inode of the test process's own network namespace, which is the host's when
// the test runs on the host. (/proc/1/ns is not readable on these machines, even to root.)
func HostNetNS(t testing.TB) uint64 {
	t.Helper()
	ino, err := NetNSOfPath("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("critest: %v", err)
	}
	return ino
}

// Container is a started container in a pod.
type Container struct {
	Pod    *Pod
	ID     string
	Name   string
	Config *runtimeapi.ContainerConfig

	once sync.Once
}

// ImageID returns the ID under which the runtime knows an image (sha256:... on containerd), as a
// kubelet resolves an image before it creates a container.
func (c *Client) ImageID(t testing.TB, image string) string {
	t.Helper()
	cx, cancel := ctx()
	defer cancel()
	resp, err := c.Images.ImageStatus(cx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err != nil {
		t.Fatalf("critest: ImageStatus %s: %v", image, err)
	}
	if resp.Image == nil {
		t.Fatalf("critest: image %s is not in the runtime (import it: bash .ci/cri.sh)", image)
	}
	return resp.Image.Id
}

// ContainerConfig returns the config a kubelet would send for a container named name running image
// in the pod: the image by its ID with the user's name beside it (so ListContainers reports the ID,
// as in a cluster), the kubelet's labels and log path, the pod's namespaces. cmd replaces the image's
// command (CRI's Command is the entrypoint); with no cmd the image's default runs.
func (p *Pod) ContainerConfig(t testing.TB, name, image string, cmd ...string) *runtimeapi.ContainerConfig {
	t.Helper()
	return NewContainerConfig(p.Config, name, p.c.ImageID(t, image), image, cmd...)
}

// NewContainerConfig is ContainerConfig for a pod's sandbox config and an image already resolved
// to its ID.
func NewContainerConfig(sandbox *runtimeapi.PodSandboxConfig, name, imageID, image string, cmd ...string) *runtimeapi.ContainerConfig {
	md := sandbox.GetMetadata()
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name, Attempt: 0},
		Image:    &runtimeapi.ImageSpec{Image: imageID, UserSpecifiedImage: image},
		Command:  cmd,
		Labels: map[string]string{
			LabelContainerName: name,
			LabelPodName:       md.GetName(),
			LabelPodNamespace:  md.GetNamespace(),
			LabelPodUID:        md.GetUid(),
		},
		Annotations: map[string]string{"io.kubernetes.container.restartCount": "0"},
		LogPath:     filepath.Join(name, "0.log"),
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork(),
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
}

// Start creates and starts a container running image in the pod (see ContainerConfig). It goes with
// its pod when the test ends.
func (p *Pod) Start(t testing.TB, name, image string, cmd ...string) *Container {
	t.Helper()
	return p.StartConfig(t, p.ContainerConfig(t, name, image, cmd...))
}

// StartConfig creates and starts a container from a config, typically one from ContainerConfig that
// the test changed.
func (p *Pod) StartConfig(t testing.TB, cfg *runtimeapi.ContainerConfig) *Container {
	t.Helper()
	name := cfg.GetMetadata().GetName()
	// The kubelet creates the container's log directory; the runtime only opens the file.
	if err := os.MkdirAll(filepath.Join(p.Config.LogDirectory, filepath.Dir(cfg.LogPath)), 0o755); err != nil {
		t.Fatalf("critest: %v", err)
	}
	cx, cancel := ctx()
	defer cancel()
	resp, err := p.c.Runtime.CreateContainer(cx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  p.ID,
		Config:        cfg,
		SandboxConfig: p.Config,
	})
	if err != nil {
		t.Fatalf("critest: CreateContainer %s in %s/%s: %v", name, p.Namespace(), p.Name(), err)
	}
	c := &Container{Pod: p, ID: resp.ContainerId, Name: name, Config: cfg}
	if _, err := p.c.Runtime.StartContainer(cx, &runtimeapi.StartContainerRequest{ContainerId: c.ID}); err != nil {
		t.Fatalf("critest: StartContainer %s in %s/%s: %v", name, p.Namespace(), p.Name(), err)
	}
	return c
}

// Exec runs cmd in the container (ExecSync, 30 s at most) and returns its output and exit code. A
// command that runs and fails is not a test failure; a runtime that cannot run it is.
func (c *Container) Exec(t testing.TB, cmd ...string) (stdout, stderr string, exit int32) {
	t.Helper()
	cx, cancel := ctx()
	defer cancel()
	resp, err := c.Pod.c.Runtime.ExecSync(cx, &runtimeapi.ExecSyncRequest{ContainerId: c.ID, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("critest: ExecSync %q in %s: %v", cmd, c.Name, err)
	}
	return string(resp.Stdout), string(resp.Stderr), resp.ExitCode
}

// Status returns the container's verbose status (containerd: Info["info"] is a JSON document).
func (c *Container) Status(t testing.TB) *runtimeapi.ContainerStatusResponse {
	t.Helper()
	cx, cancel := ctx()
	defer cancel()
	resp, err := c.Pod.c.Runtime.ContainerStatus(cx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ID, Verbose: true})
	if err != nil {
		t.Fatalf("critest: ContainerStatus %s: %v", c.ID, err)
	}
	return resp
}

// Pid returns the host pid of the container's first process.
func (c *Container) Pid(t testing.TB) int {
	t.Helper()
	i, err := ParseInfo(c.Status(t).Info)
	if err != nil {
		t.Fatalf("critest: container %s: %v", c.ID, err)
	}
	if i.Pid <= 0 {
		t.Fatalf("critest: container %s: verbose info has no pid (not running?)", c.ID)
	}
	return i.Pid
}

// NetNS returns the inode of the container's network namespace.
func (c *Container) NetNS(t testing.TB) uint64 {
	t.Helper()
	ino, err := NetNSOfPid(c.Pid(t))
	if err != nil {
		t.Fatalf("critest: container %s: %v", c.ID, err)
	}
	return ino
}

// Remove stops (SIGKILL at once: the test image's processes ignore SIGTERM as pid 1) and removes the
// container now; the pod stays.
func (c *Container) Remove(t testing.TB) {
	t.Helper()
	c.once.Do(func() {
		cx, cancel := ctx()
		defer cancel()
		rt := c.Pod.c.Runtime
		if _, err := rt.StopContainer(cx, &runtimeapi.StopContainerRequest{ContainerId: c.ID, Timeout: 0}); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("critest: StopContainer %s: %v", c.Name, err)
		}
		if _, err := rt.RemoveContainer(cx, &runtimeapi.RemoveContainerRequest{ContainerId: c.ID}); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("critest: RemoveContainer %s: %v", c.Name, err)
		}
	})
}
