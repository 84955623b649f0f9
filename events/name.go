package events

// Name is how output names the network namespace something happened in: "host", a pod's
// NAMESPACE/POD, or the names of the containers in it. The containers package fills it.
type Name struct {
	// Name is "host", a pod's NAMESPACE/POD, or the names of the containers in it joined by ","
	// (sorted); empty when nobody names the namespace.
	Name string
	// ID is the short IDs of the (non-sandbox) containers in it, joined by "," in the same order.
	ID string
	// Namespace and Pod name the Kubernetes pod, empty outside Kubernetes.
	Namespace, Pod string
}

// AppendNameJSON appends the keys that name a namespace, without braces: "container",
// "container_id", "k8s_namespace", "k8s_pod".
func AppendNameJSON(b []byte, n Name) []byte {
	b = append(b, `"container":`...)
	b = AppendJSONString(b, n.Name)
	b = append(b, `,"container_id":`...)
	b = AppendJSONString(b, n.ID)
	b = append(b, `,"k8s_namespace":`...)
	b = AppendJSONString(b, n.Namespace)
	b = append(b, `,"k8s_pod":`...)
	return AppendJSONString(b, n.Pod)
}
