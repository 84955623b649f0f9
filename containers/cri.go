package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/emptypb"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRIPollInterval is how often a CRI runtime is asked for its pods when it has no event stream
// (containerd 1.6 answers GetContainerEvents with Unimplemented), and the safety resync when it
// has one: two cheap list calls, with a lookup of each new pod and container only. The
// environment variable SOCKSCOPE_CRI_POLL_INTERVAL (a Go duration) changes it: longer on a node
// whose runtime streams events, or to show in a test that events alone name a pod.
const CRIPollInterval = time.Second

// eventBurst is how long a CRI event waits for the events that follow it before the poll.
const eventBurst = 20 * time.Millisecond

func pollInterval() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("SOCKSCOPE_CRI_POLL_INTERVAL")); err == nil && d > 0 {
		return d
	}
	return CRIPollInterval
}

// CRI is a connection to a Kubernetes Container Runtime Interface endpoint: containerd, CRI-O or
// cri-dockerd. It names network namespaces after pods (NAMESPACE/POD) from what CRI gives without
// an API server: pod name, namespace, UID and the sandbox's PID. It is safe for concurrent use.
type CRI struct {
	conn     *grpc.ClientConn
	rs       cri.RuntimeServiceClient
	endpoint string
	hostRoot string
	kind     string
	version  string
	events   bool // subscribe to GetContainerEvents (see eventsSafe)

	mu        sync.Mutex
	sandboxes map[string]sandbox // ready sandboxes already looked up, by ID
	images    map[string]string  // image names of running containers already looked up, by ID
}

// sandbox is what a pod's sandbox status tells once.
type sandbox struct {
	pod       Pod
	labels    map[string]string
	pid       int    // 0 when the runtime runs no process for the pod (CRI-O drops the infra container)
	netns     uint32 // inode of the pod's network namespace
	netnsPath string // a file that enters it: /proc/PID/ns/net, or the runtime's pinned file
}

// DialCRI connects to a CRI endpoint (unix:///path, or a bare path) and checks that it speaks
// CRI v1. hostRoot prefixes the paths the runtime reports (a pod's pinned netns), for sockscope
// running in a container that mounts the host's filesystem there. The error for an endpoint that
// does not answer, does not speak CRI, or has CRI disabled names the socket in one line.
func DialCRI(ctx context.Context, endpoint, hostRoot string) (*CRI, error) {
	target, path, err := criTarget(endpoint)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("CRI endpoint %s: %s", endpoint, statCause(err))
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("CRI endpoint %s: %w", endpoint, err)
	}
	c := &CRI{conn: conn, rs: cri.NewRuntimeServiceClient(conn), endpoint: target, hostRoot: hostRoot,
		sandboxes: map[string]sandbox{}, images: map[string]string{}}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dialTimeout)
		defer cancel()
	}
	v, err := c.rs.Version(ctx, &cri.VersionRequest{})
	if err != nil {
		err = c.notCRI(ctx, err)
		conn.Close()
		return nil, err
	}
	c.kind = criKind(v.RuntimeName)
	c.version = fmt.Sprintf("%s (CRI %s)", v.RuntimeVersion, v.RuntimeApiVersion)
	c.events = eventsSafe(c.kind, v.RuntimeVersion)
	return c, nil
}

// criTarget turns an endpoint as users write it (unix:///run/x.sock, /run/x.sock) into a gRPC
// target and the socket's path.
func criTarget(endpoint string) (target, path string, err error) {
	switch {
	case strings.HasPrefix(endpoint, "unix://"):
		path = strings.TrimPrefix(endpoint, "unix://")
	case strings.HasPrefix(endpoint, "/"):
		path = endpoint
	default:
		return "", "", fmt.Errorf("CRI endpoint %q: want unix:///PATH (CRI runtimes listen on unix sockets)", endpoint)
	}
	if !filepath.IsAbs(path) {
		return "", "", fmt.Errorf("CRI endpoint %q: the socket path must be absolute, e.g. unix:///run/containerd/containerd.sock", endpoint)
	}
	return "unix://" + path, path, nil
}

func statCause(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// ErrCRIDisabled means a containerd answers, but without its CRI plugin: Docker's own containerd
// is built and configured that way. Its containers are named through Docker.
var ErrCRIDisabled = errors.New("the CRI plugin is disabled")

// ErrNotCRI means the endpoint answers, but not as a CRI runtime.
var ErrNotCRI = errors.New("not a CRI runtime")

// notCRI explains a failed Version call in one line.
func (c *CRI) notCRI(ctx context.Context, err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unimplemented:
		if v, ok := containerdVersion(ctx, c.conn); ok {
			return fmt.Errorf("CRI endpoint %s: containerd %s answers, but %w (as in Docker's own containerd); name its containers through Docker, or enable CRI in its config.toml", c.endpoint, v, ErrCRIDisabled)
		}
		return fmt.Errorf("CRI endpoint %s: %w: it does not serve runtime.v1.RuntimeService (%s)", c.endpoint, ErrNotCRI, st.Message())
	case codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("CRI endpoint %s: no answer in time (is the runtime running?)", c.endpoint)
	case codes.Unavailable:
		msg := st.Message()
		// A server that is not gRPC (Docker's HTTP API, say) closes the connection or answers
		// with something that is not an HTTP/2 preface.
		if strings.Contains(msg, "preface") || strings.Contains(msg, "frame") || strings.Contains(msg, "EOF") {
			return fmt.Errorf("CRI endpoint %s: %w: it does not speak gRPC (%s)", c.endpoint, ErrNotCRI, msg)
		}
		return fmt.Errorf("CRI endpoint %s: cannot connect: %s (is the runtime running?)", c.endpoint, msg)
	}
	return fmt.Errorf("CRI endpoint %s: %s", c.endpoint, st.Message())
}

// containerdVersion asks containerd's own version service, which answers even with CRI off.
// The reply is read from its wire form (field 1 is the version string), so that sockscope needs
// none of containerd's packages.
func containerdVersion(ctx context.Context, conn *grpc.ClientConn) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	reply := &emptypb.Empty{}
	if err := conn.Invoke(ctx, "/containerd.services.version.v1.Version/Version", &emptypb.Empty{}, reply); err != nil {
		return "", false
	}
	b := reply.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				break
			}
			return string(v), true
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			break
		}
		b = b[n:]
	}
	return "", true
}

// eventsSafe says whether subscribing to the runtime's CRI event stream is both useful and
// harmless. containerd 1.6 and cri-dockerd do not implement it. containerd 1.7 hands each event
// to one subscriber only, so a second subscriber would take events from the kubelet (with its
// evented PLEG); 2.0 broadcasts. CRI-O shares one channel the same way before 1.28, and streams
// only with enable_pod_events (otherwise the stream ends at once, which followEvents notices).
func eventsSafe(kind, version string) bool {
	major, minor := versionNumbers(version)
	switch kind {
	case "containerd":
		return major >= 2
	case "cri-o":
		return major > 1 || major == 1 && minor >= 28
	}
	return false
}

// versionNumbers reads "v1.7.2", "1.6.20~ds1" or "2.0.0-rc.1" as major and minor.
func versionNumbers(v string) (major, minor int) {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	num := func(s string) int {
		n := 0
		for _, r := range s {
			if r < '0' || r > '9' {
				break
			}
			n = n*10 + int(r-'0')
		}
		return n
	}
	if len(parts) > 0 {
		major = num(parts[0])
	}
	if len(parts) > 1 {
		minor = num(parts[1])
	}
	return major, minor
}

func criKind(runtimeName string) string {
	switch strings.ToLower(runtimeName) {
	case "containerd":
		return "containerd"
	case "cri-o":
		return "cri-o"
	case "docker":
		return "cri-dockerd" // cri-dockerd reports the runtime it drives
	}
	return "cri"
}

// Info says which runtime this is.
func (c *CRI) Info() Info { return Info{Kind: c.kind, Endpoint: c.endpoint, Version: c.version} }

// Close releases the connection.
func (c *CRI) Close() error { return c.conn.Close() }

// Running returns the ready pod sandboxes and the running containers, each with the pod's Pid
// and Netns. Each new sandbox costs one PodSandboxStatus, each new container one ContainerStatus
// (for its image name); known ones cost nothing.
func (c *CRI) Running(ctx context.Context) ([]Container, error) {
	sbs, err := c.rs.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{Filter: &cri.PodSandboxFilter{
		State: &cri.PodSandboxStateValue{State: cri.PodSandboxState_SANDBOX_READY}}})
	if err != nil {
		return nil, c.callErr("listing pod sandboxes", err)
	}
	cts, err := c.rs.ListContainers(ctx, &cri.ListContainersRequest{Filter: &cri.ContainerFilter{
		State: &cri.ContainerStateValue{State: cri.ContainerState_CONTAINER_RUNNING}}})
	if err != nil {
		return nil, c.callErr("listing containers", err)
	}
	ready := make(map[string]sandbox, len(sbs.Items))
	out := make([]Container, 0, len(sbs.Items)+len(cts.Containers))
	var noProcess error
	for _, s := range sbs.Items {
		// A sandbox whose process is gone is stopping: the runtime says so a moment later.
		sb, err := askWhileExiting(ctx, exitPatienceFor(noProcess, len(out)), func() (sandbox, error) { return c.sandbox(ctx, s.Id) })
		if errors.Is(err, ErrNotFound) || errors.Is(err, errNotReady) {
			continue // removed or stopped meanwhile
		}
		if errors.Is(err, ErrNoProcess) {
			noProcess = err
			continue
		}
		if err != nil {
			return nil, err
		}
		ready[s.Id] = sb
		out = append(out, Container{Runtime: c.kind, ID: s.Id, Labels: sb.labels, Pid: sb.pid, Netns: sb.netns,
			NetnsPath: sb.netnsPath, Pod: sb.pod, Sandbox: true, Up: true})
	}
	images := make(map[string]string, len(cts.Containers))
	for _, ct := range cts.Containers {
		sb, ok := ready[ct.PodSandboxId]
		if !ok {
			continue // its pod is going away
		}
		image, err := c.image(ctx, ct)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		images[ct.Id] = image
		out = append(out, Container{Runtime: c.kind, ID: ct.Id, Name: ct.GetMetadata().GetName(), Image: image,
			Labels: ct.Labels, Pid: sb.pid, Netns: sb.netns, NetnsPath: sb.netnsPath, Pod: sb.pod, Up: true})
	}
	c.mu.Lock()
	for id := range c.sandboxes {
		if _, ok := ready[id]; !ok {
			delete(c.sandboxes, id)
		}
	}
	c.images = images
	c.mu.Unlock()
	if len(out) == 0 && noProcess != nil {
		return nil, noProcess
	}
	return out, nil
}

var errNotReady = errors.New("sandbox not ready")

// sandbox looks a ready sandbox up once: its pod, and the PID whose namespace is the pod's.
func (c *CRI) sandbox(ctx context.Context, id string) (sandbox, error) {
	c.mu.Lock()
	sb, ok := c.sandboxes[id]
	c.mu.Unlock()
	if ok {
		if ns, err := NetnsInodeOfPath(sb.netnsPath); err == nil && ns == sb.netns {
			return sb, nil
		}
	}
	res, err := c.rs.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return sandbox{}, ErrNotFound
		}
		return sandbox{}, c.callErr("pod sandbox status of "+shortID(id), err)
	}
	st := res.GetStatus()
	if st.GetState() != cri.PodSandboxState_SANDBOX_READY {
		return sandbox{}, errNotReady
	}
	md := st.GetMetadata()
	sb = sandbox{
		pod: Pod{Namespace: md.GetNamespace(), Name: md.GetName(), UID: md.GetUid(),
			HostNetwork: st.GetLinux().GetNamespaces().GetOptions().GetNetwork() == cri.NamespaceMode_NODE},
		labels: st.GetLabels(),
	}
	info := parseSandboxInfo(res.GetInfo())
	sb.pid = info.pid
	if sb.pid > 0 {
		if ns, err := NetnsInode(sb.pid); err == nil {
			sb.netns, sb.netnsPath = ns, procNetns(sb.pid)
		}
	}
	if sb.netns == 0 && info.netnsPath != "" {
		// No process to go through (CRI-O runs none for a pod without an infra container): the
		// namespace file the runtime pinned, as seen under the host's root.
		p := c.hostPath(info.netnsPath)
		if ns, err := NetnsInodeOfPath(p); err == nil {
			sb.netns, sb.netnsPath = ns, p
		}
	}
	if sb.netns == 0 && sb.pod.HostNetwork {
		// containerd drops a hostNetwork pod's network namespace from its spec, and the PID may
		// be invisible: it is the host's in any case.
		if p, ns, err := HostNetnsPath(); err == nil {
			sb.netns, sb.netnsPath = ns, p
		}
	}
	if sb.netns == 0 {
		return sandbox{}, fmt.Errorf("pod %s (sandbox %s) at %s: its network namespace is not visible (sandbox PID %d%s; is sockscope running without the host's PID namespace?): %w",
			sb.pod, shortID(id), c.endpoint, sb.pid, pathNote(info.netnsPath), ErrNoProcess)
	}
	c.mu.Lock()
	c.sandboxes[id] = sb
	c.mu.Unlock()
	return sb, nil
}

// hostPath is where a path on the host is seen from here: under --host-root, with /var/run read
// as /run (an absolute /var/run -> /run link would resolve against sockscope's own root).
func (c *CRI) hostPath(p string) string {
	if c.hostRoot == "" {
		return p
	}
	if rest, ok := strings.CutPrefix(p, "/var/run/"); ok {
		if st, err := os.Lstat(filepath.Join(c.hostRoot, "var/run")); err != nil || !st.IsDir() {
			return filepath.Join(c.hostRoot, "run", rest)
		}
	}
	return filepath.Join(c.hostRoot, p)
}

func pathNote(p string) string {
	if p == "" {
		return ""
	}
	return ", netns " + p
}

// sandboxInfo is what sockscope reads from a sandbox's verbose status.
type sandboxInfo struct {
	pid       int
	netnsPath string
}

// parseSandboxInfo reads the sandbox PID (and the pinned netns path) from the verbose info map.
// containerd and CRI-O both put a JSON object under "info" with "pid" and "runtimeSpec" (whose
// linux.namespaces list the network namespace's path); any other key holding the same shape is
// read too, since the map's keys are not part of the CRI contract.
func parseSandboxInfo(m map[string]string) sandboxInfo {
	type ns struct {
		Type string `json:"type"`
		Path string `json:"path"`
	}
	type shape struct {
		Pid         int `json:"pid"`
		RuntimeSpec struct {
			Linux struct {
				Namespaces []ns `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	var out sandboxInfo
	keys := []string{"info"}
	for k := range m {
		if k != "info" {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		v, ok := m[k]
		if !ok || !strings.HasPrefix(strings.TrimSpace(v), "{") {
			continue
		}
		var s shape
		if json.Unmarshal([]byte(v), &s) != nil {
			continue
		}
		if out.pid == 0 && s.Pid > 0 {
			out.pid = s.Pid
		}
		for _, n := range s.RuntimeSpec.Linux.Namespaces {
			if n.Type == "network" && n.Path != "" && out.netnsPath == "" {
				out.netnsPath = n.Path
			}
		}
	}
	return out
}

// image returns the image name a running container was created from, looked up once.
func (c *CRI) image(ctx context.Context, ct *cri.Container) (string, error) {
	c.mu.Lock()
	img, ok := c.images[ct.Id]
	c.mu.Unlock()
	if ok {
		return img, nil
	}
	res, err := c.rs.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: ct.Id})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return "", ErrNotFound
		}
		return "", c.callErr("container status of "+shortID(ct.Id), err)
	}
	// The status names the image as pulled (a tag); the list gives only its ID.
	if img := res.GetStatus().GetImage().GetImage(); img != "" {
		return img, nil
	}
	return ct.GetImage().GetImage(), nil
}

// All returns every pod sandbox and container the runtime knows, running or not.
func (c *CRI) All(ctx context.Context) ([]Container, error) {
	sbs, err := c.rs.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		return nil, c.callErr("listing pod sandboxes", err)
	}
	cts, err := c.rs.ListContainers(ctx, &cri.ListContainersRequest{})
	if err != nil {
		return nil, c.callErr("listing containers", err)
	}
	pods := make(map[string]Pod, len(sbs.Items))
	out := make([]Container, 0, len(sbs.Items)+len(cts.Containers))
	for _, s := range sbs.Items {
		md := s.GetMetadata()
		p := Pod{Namespace: md.GetNamespace(), Name: md.GetName(), UID: md.GetUid()}
		pods[s.Id] = p
		out = append(out, Container{Runtime: c.kind, ID: s.Id, Labels: s.Labels, Pod: p, Sandbox: true,
			Up: s.State == cri.PodSandboxState_SANDBOX_READY})
	}
	for _, ct := range cts.Containers {
		out = append(out, Container{Runtime: c.kind, ID: ct.Id, Name: ct.GetMetadata().GetName(), Image: ct.GetImage().GetImage(),
			Labels: ct.Labels, Pod: pods[ct.PodSandboxId], Up: ct.State == cri.ContainerState_CONTAINER_RUNNING})
	}
	return out, nil
}

// Watch follows the runtime. It polls every CRIPollInterval (two list calls) and reports a
// change when the ready pods or running containers differ from the last poll, and each
// container that exited, with its exit code. Where the runtime streams events
// (GetContainerEvents, containerd 1.7+ and CRI-O with events enabled), each event polls at once,
// so names follow within milliseconds; containerd 1.6 answers Unimplemented, and polling alone
// remains.
func (c *CRI) Watch(ctx context.Context, notify func(Event)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kick := make(chan struct{}, 1)
	if c.events {
		go c.followEvents(ctx, kick)
	}

	var last map[string]cri.ContainerState
	var lastPods map[string]bool
	poll := func() error {
		pods, ctrs, err := c.states(ctx)
		if err != nil {
			return err
		}
		changed := last == nil || len(pods) != len(lastPods)
		for id := range pods {
			if !lastPods[id] {
				changed = true
			}
		}
		for id, st := range ctrs {
			if st == cri.ContainerState_CONTAINER_RUNNING && last[id] != cri.ContainerState_CONTAINER_RUNNING {
				changed = true
			}
		}
		for id, st := range last {
			if st != cri.ContainerState_CONTAINER_RUNNING || ctrs[id] == cri.ContainerState_CONTAINER_RUNNING {
				continue
			}
			changed = true
			if e, ok := c.exit(ctx, id); ok {
				notify(e)
			}
		}
		first := last == nil
		last, lastPods = ctrs, pods
		if changed || first {
			notify(Event{})
		}
		return nil
	}
	if err := poll(); err != nil {
		return err
	}
	t := time.NewTicker(pollInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-kick:
			// A pod's start is a burst of events (sandbox and each container created, then
			// started): gather them into one poll.
			time.Sleep(eventBurst)
			select {
			case <-kick:
			default:
			}
		}
		if err := poll(); err != nil {
			return err
		}
	}
}

// states lists the ready sandboxes and every container's state: the cheap part of a poll.
func (c *CRI) states(ctx context.Context) (pods map[string]bool, ctrs map[string]cri.ContainerState, err error) {
	sbs, err := c.rs.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{Filter: &cri.PodSandboxFilter{
		State: &cri.PodSandboxStateValue{State: cri.PodSandboxState_SANDBOX_READY}}})
	if err != nil {
		return nil, nil, c.callErr("listing pod sandboxes", err)
	}
	cts, err := c.rs.ListContainers(ctx, &cri.ListContainersRequest{})
	if err != nil {
		return nil, nil, c.callErr("listing containers", err)
	}
	pods = make(map[string]bool, len(sbs.Items))
	for _, s := range sbs.Items {
		pods[s.Id] = true
	}
	ctrs = make(map[string]cri.ContainerState, len(cts.Containers))
	for _, ct := range cts.Containers {
		ctrs[ct.Id] = ct.State
	}
	return pods, ctrs, nil
}

// exit reads a stopped container's exit code and time.
func (c *CRI) exit(ctx context.Context, id string) (Event, bool) {
	res, err := c.rs.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return Event{}, false // removed already: its exit is not known
	}
	st := res.GetStatus()
	e := Event{Stopped: id, ExitCode: int(st.GetExitCode())}
	if st.GetFinishedAt() > 0 {
		e.At = time.Unix(0, st.GetFinishedAt())
	}
	return e, true
}

// followEvents kicks a poll at every event of the runtime's stream, for as long as the runtime
// streams them; without a stream the poll's ticker alone follows. The stream only says that
// something changed: its statuses are not verbose (no PID), so the poll looks the change up.
func (c *CRI) followEvents(ctx context.Context, kick chan<- struct{}) {
	backoff := minBackoff
	for ctx.Err() == nil {
		got := 0
		stream, err := c.rs.GetContainerEvents(ctx, &cri.GetEventsRequest{})
		if err == nil {
			for {
				if _, err = stream.Recv(); err != nil {
					break
				}
				got++
				backoff = minBackoff
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		}
		// Unimplemented, or a stream that ends cleanly before any event (CRI-O without
		// enable_pod_events): there are no events to follow.
		if status.Code(err) == codes.Unimplemented || errors.Is(err, io.EOF) && got == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// callErr names the endpoint and the call in a failure.
func (c *CRI) callErr(what string, err error) error {
	st, _ := status.FromError(err)
	if st.Code() == codes.Unavailable {
		return fmt.Errorf("%s at %s: cannot connect: %s", what, c.endpoint, st.Message())
	}
	return fmt.Errorf("%s at %s: %s", what, c.endpoint, st.Message())
}
