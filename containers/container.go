package containers

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/sockscope/sockscope/events"
)

// Container is what sockscope needs to know about one container, or about a pod's sandbox.
type Container struct {
	Runtime string            // the runtime that reported it: docker, podman, containerd, cri-o, ...
	ID      string            // full ID
	Name    string            // Docker/podman: its name; CRI: its name inside the pod
	Image   string            // the image as the user named it (e.g. "nginx:1.27"), not its digest
	Labels  map[string]string // container labels (compose project/service, Kubernetes, ...)
	Pid     int               // host PID of a process in it (a pod's: the sandbox's); 0 if not running or not known
	Netns   uint32            // inode of its network namespace, 0 if not running
	// NetnsPath is a file that enters its network namespace: /proc/PID/ns/net, or the pinned
	// namespace file a CRI runtime reports when it runs no process for the pod (CRI-O without an
	// infra container). Empty when not running.
	NetnsPath string
	Pod       Pod // the Kubernetes pod it belongs to; zero outside Kubernetes
	// Sandbox marks a pod's sandbox (pause or infra) container: it holds the pod's namespaces and
	// names them, but it is never shown as a container.
	Sandbox bool
	// Up says the runtime reports it running (or paused). Set by lists of all containers, where
	// Pid and Netns are not looked up.
	Up bool
}

// Pod is the Kubernetes pod a container belongs to.
type Pod struct {
	Namespace string
	Name      string
	UID       string
	// HostNetwork: the pod shares the host's network namespace, which stays "host".
	HostNetwork bool
}

// IsZero reports whether there is no pod.
func (p Pod) IsZero() bool { return p.Name == "" }

// String is how sockscope names a pod: NAMESPACE/POD.
func (p Pod) String() string {
	if p.IsZero() {
		return ""
	}
	return p.Namespace + "/" + p.Name
}

// ShortID returns the 12-character form of the ID that docker ps and crictl show.
func (c Container) ShortID() string { return shortID(c.ID) }

// Running reports whether the container has a network namespace.
func (c Container) Running() bool { return c.Netns != 0 }

// procNetns is the namespace file of a process.
func procNetns(pid int) string { return "/proc/" + strconv.Itoa(pid) + "/ns/net" }

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Kubernetes labels that kubelet's Docker integrations (dockershim, cri-dockerd) put on the
// Docker containers they create: with them a Docker container is recognised as part of a pod.
const (
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodName       = "io.kubernetes.pod.name"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
	labelDockerType    = "io.kubernetes.docker.type" // "podsandbox" or "container"
)

// podFromLabels fills Pod, Sandbox and the container's name inside the pod from Kubernetes
// labels, for runtimes that only know containers.
func (c *Container) podFromLabels() {
	l := c.Labels
	if l[labelPodName] == "" {
		return
	}
	c.Pod = Pod{Namespace: l[labelPodNamespace], Name: l[labelPodName], UID: l[labelPodUID]}
	c.Sandbox = l[labelDockerType] == "podsandbox" || l[labelContainerName] == "POD"
	if n := l[labelContainerName]; n != "" && !c.Sandbox {
		c.Name = n
	}
}

// Name is how sockscope shows one network namespace (defined with the output it appears in).
type Name = events.Name

// HostName is the name of the host's network namespace.
var HostName = Name{Name: "host"}

// DisplayName is how sockscope names a network namespace holding the containers cs: a pod's
// NAMESPACE/POD when they belong to one (the sandbox is never listed), otherwise the names of the
// containers joined by "," (sorted), with their short IDs in the same order.
func DisplayName(cs []Container) Name {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b Container) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
	})
	var pods []Pod
	var names, ids []string
	for _, c := range cs {
		if !c.Pod.IsZero() && !slices.ContainsFunc(pods, func(p Pod) bool { return p.String() == c.Pod.String() }) {
			pods = append(pods, c.Pod)
		}
		if c.Sandbox {
			continue
		}
		n := c.Name
		if n == "" {
			n = c.ShortID()
		}
		names = append(names, n)
		ids = append(ids, c.ShortID())
	}
	id := strings.Join(ids, ",")
	switch {
	case len(pods) == 1:
		return Name{Name: pods[0].String(), ID: id, Namespace: pods[0].Namespace, Pod: pods[0].Name}
	case len(pods) > 1: // never seen in practice: pods share a netns only through the host's
		keys := make([]string, len(pods))
		for i, p := range pods {
			keys[i] = p.String()
		}
		slices.Sort(keys)
		return Name{Name: strings.Join(keys, ","), ID: id}
	}
	return Name{Name: strings.Join(names, ","), ID: id}
}
