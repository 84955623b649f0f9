package recording

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events/sockets"
)

// MinInterval is the shortest --interval a recording is made with: a file that claims a shorter
// one is not honest, and its timeline would cost a step per nanosecond.
const MinInterval = 100 * time.Millisecond

// Meta describes the recording: written first, and again at the start of each rotated file.
type Meta struct {
	Sockscope   string            `json:"sockscope"` // the recorder's version
	Hostname    string            `json:"hostname"`
	Kernel      string            `json:"kernel"`
	Arch        string            `json:"arch"` // GOARCH: syscall numbers depend on it
	Start       time.Time         `json:"start"`
	ClockOffset int64             `json:"clock_offset_ns"` // wall minus monotonic clock (events carry the latter)
	Interval    time.Duration     `json:"interval_ns"`     // snapshot and syscall interval
	HostNetns   uint32            `json:"host_netns"`
	Scope       string            `json:"scope"`                 // what was recorded, for people
	NetnsNames  map[uint32]string `json:"netns_names,omitempty"` // --netns namespaces, named as sockets names them
	Filtered    bool              `json:"filtered"`              // only some namespaces were recorded
	Latency     bool              `json:"latency"`               // syscall latency was measured
	Paths       bool              `json:"paths"`                 // syscall paths were counted
	// Comms: only the sockets, syscalls and stacks of processes with these names were recorded
	// (record --comm). Socket snapshots hold every socket of the namespaces, as ss shows them.
	Comms []string `json:"comms,omitempty"`
}

// Container is one container (or pod sandbox) seen during the recording.
type Container struct {
	ID      string            `json:"id"`
	Name    string            `json:"name"`
	Image   string            `json:"image"`
	Labels  map[string]string `json:"labels,omitempty"`
	Pid     int               `json:"pid"`
	Netns   uint32            `json:"netns"`
	Runtime string            `json:"runtime,omitempty"` // docker, podman, containerd, cri-o, ...
	// The Kubernetes pod it belongs to (absent in recordings made before pods were named).
	K8sNamespace string    `json:"k8s_namespace,omitempty"`
	K8sPod       string    `json:"k8s_pod,omitempty"`
	PodUID       string    `json:"pod_uid,omitempty"`
	HostNetwork  bool      `json:"host_network,omitempty"`
	Sandbox      bool      `json:"sandbox,omitempty"` // the pod's sandbox: names the netns, not a container
	Started      time.Time `json:"started"`           // when the recording first saw it run
	Stopped      time.Time `json:"stopped,omitzero"`  // when it stopped, zero while it runs
	ExitCode     int       `json:"exit_code,omitempty"`
	Selected     bool      `json:"selected,omitempty"` // named with --container
}

// containerKey is a Container without its labels: comparable.
type containerKey struct {
	ID, Name, Image, Runtime, K8sNamespace, K8sPod, PodUID string
	Pid, ExitCode                                          int
	Netns                                                  uint32
	HostNetwork, Sandbox, Selected                         bool
	Started, Stopped                                       time.Time
}

func (c Container) key() containerKey {
	return containerKey{c.ID, c.Name, c.Image, c.Runtime, c.K8sNamespace, c.K8sPod, c.PodUID, c.Pid, c.ExitCode,
		c.Netns, c.HostNetwork, c.Sandbox, c.Selected, c.Started, c.Stopped}
}

// ShortID is the 12-character ID docker ps shows.
func (c Container) ShortID() string { return c.ID[:min(12, len(c.ID))] }

// FromContainer is how a running container is recorded.
func FromContainer(c containers.Container) Container {
	return Container{ID: c.ID, Name: c.Name, Image: c.Image, Labels: c.Labels, Pid: c.Pid, Netns: c.Netns,
		Runtime: c.Runtime, K8sNamespace: c.Pod.Namespace, K8sPod: c.Pod.Name, PodUID: c.Pod.UID,
		HostNetwork: c.Pod.HostNetwork, Sandbox: c.Sandbox}
}

// Live is the recorded container as the containers package describes it.
func (c Container) Live() containers.Container {
	return containers.Container{Runtime: c.Runtime, ID: c.ID, Name: c.Name, Image: c.Image, Labels: c.Labels,
		Pid: c.Pid, Netns: c.Netns, Sandbox: c.Sandbox, Up: c.Stopped.IsZero(),
		Pod: containers.Pod{Namespace: c.K8sNamespace, Name: c.K8sPod, UID: c.PodUID, HostNetwork: c.HostNetwork}}
}

// Containers is the payload of a containers block: every container the recorder knows, running
// or stopped (BlockContainers), or those that changed (BlockContainerChanges).
type Containers struct {
	List []Container `json:"containers"`
	// Changes marks a list of changes, in a Recording built in memory (the block type says it in
	// a file).
	Changes bool `json:"-"`
}

// NetnsFacts are the settings of one network namespace that explain port and connection incidents.
type NetnsFacts struct {
	Netns     uint32 `json:"netns"`
	PortRange [2]int `json:"ip_local_port_range"`
	TWReuse   int    `json:"tcp_tw_reuse"`
	Somaxconn int    `json:"somaxconn"`
}

// Process is one process in a recorded namespace with its file descriptor limit.
type Process struct {
	Pid        uint32 `json:"pid"`
	Netns      uint32 `json:"netns"`
	Comm       string `json:"comm"`
	NofileSoft int64  `json:"nofile_soft"` // RLIMIT_NOFILE; -1 = unlimited
	NofileHard int64  `json:"nofile_hard"`
	Fds        int    `json:"fds"` // open file descriptors when the facts were taken
}

// Facts are the kernel and process settings at one moment.
type Facts struct {
	Netns     []NetnsFacts `json:"netns"`
	Processes []Process    `json:"processes"`
}

// Lost counts the events the kernel could not hand over, since the start.
type Lost struct {
	RingFull uint64 `json:"ring_full"`
	Nested   uint64 `json:"nested"`
}

// Total is every lost event.
func (l Lost) Total() uint64 { return l.RingFull + l.Nested }

// End is the last block of a complete file.
type End struct {
	Reason string `json:"reason"` // "duration", "signal", "max-size" (rotated), "error: ..."
}

// SocketSnapshot is one namespace's TCP sockets at one moment, as the kernel iterator gave them.
type SocketSnapshot struct {
	Time      time.Time
	Netns     uint32
	PortRange [2]int
	TWReuse   int
	Records   []byte // sockets.SocketRecordSize each
	Owners    []byte // sockets.OwnerRecordSize each, only those owning a socket in Records
}

// Decode turns the snapshot into sockets, as `sockscope sockets` shows them.
func (s *SocketSnapshot) Decode() ([]sockets.Socket, error) {
	owners, err := sockets.DecodeOwners(s.Owners)
	if err != nil {
		return nil, err
	}
	return sockets.DecodeSockets(s.Records, s.Netns, owners)
}

const socketsHeader = 24

// EncodeSockets is the payload of a sockets block:
// netns u32 | port range low i32 | high i32 | tcp_tw_reuse i32 | records u32 | owners u32 | records | owners.
// The records are the kernel iterator's (struct sock_record and owner_record, bpf/sockets.h) as
// it gives them: changing those structs changes the format (testdata/golden-v2.rec holds them).
func EncodeSockets(s *SocketSnapshot) []byte {
	b := make([]byte, socketsHeader, socketsHeader+len(s.Records)+len(s.Owners))
	le := binary.LittleEndian
	le.PutUint32(b[0:], s.Netns)
	le.PutUint32(b[4:], uint32(int32(s.PortRange[0])))
	le.PutUint32(b[8:], uint32(int32(s.PortRange[1])))
	le.PutUint32(b[12:], uint32(int32(s.TWReuse)))
	le.PutUint32(b[16:], uint32(len(s.Records)/sockets.SocketRecordSize))
	le.PutUint32(b[20:], uint32(len(s.Owners)/sockets.OwnerRecordSize))
	b = append(b, s.Records...)
	return append(b, s.Owners...)
}

func decodeSockets(b []byte) (SocketSnapshot, error) {
	if len(b) < socketsHeader {
		return SocketSnapshot{}, fmt.Errorf("%d bytes, shorter than its %d-byte header", len(b), socketsHeader)
	}
	le := binary.LittleEndian
	s := SocketSnapshot{
		Netns:     le.Uint32(b[0:]),
		PortRange: [2]int{int(int32(le.Uint32(b[4:]))), int(int32(le.Uint32(b[8:])))},
		TWReuse:   int(int32(le.Uint32(b[12:]))),
	}
	nrec, nown := uint64(le.Uint32(b[16:])), uint64(le.Uint32(b[20:]))
	body := b[socketsHeader:]
	if want := nrec*sockets.SocketRecordSize + nown*sockets.OwnerRecordSize; uint64(len(body)) != want {
		return s, fmt.Errorf("%d sockets and %d owners need %d bytes, the block has %d", nrec, nown, want, len(body))
	}
	s.Records = slices.Clone(body[:nrec*sockets.SocketRecordSize])
	s.Owners = slices.Clone(body[nrec*sockets.SocketRecordSize:])
	return s, nil
}

// validate checks what the reader computes with: the interval sizes the timeline, the start
// anchors it.
func (m *Meta) validate() error {
	if m.Interval < MinInterval {
		return fmt.Errorf("interval %s is shorter than any recording's (%s at least)", m.Interval, MinInterval)
	}
	if m.Start.Before(time.Unix(0, math.MinInt64)) || m.Start.After(time.Unix(0, math.MaxInt64)) {
		return fmt.Errorf("start %s is not a time a recording can start at", m.Start.Format(time.RFC3339))
	}
	return nil
}

// Timed is a value with the time it was recorded.
type Timed[T any] struct {
	Time  time.Time
	Value T
}

// Stacks are the user stacks that `record --stacks` counted since the previous stacks block, and
// how they relate to the calls: every matching call (Exact) or a rate-limited sample.
type Stacks struct {
	Exact      bool              `json:"exact"`
	Syscalls   []string          `json:"syscalls,omitempty"` // the syscalls sampled; empty: every one
	RatePerCPU uint32            `json:"rate_per_cpu,omitempty"`
	Matched    uint64            `json:"matched"` // calls that passed the filters
	Sampled    uint64            `json:"sampled"` // of those, copied
	Lost       uint64            `json:"lost"`    // not copied: the ring buffer was full
	NotUnwound map[string]uint64 `json:"not_unwound,omitempty"`
	List       []StackCount      `json:"stacks"`
}

// StackCount is one distinct stack of one (namespace, command, syscall), named.
type StackCount struct {
	Netns     uint32   `json:"netns"`
	Comm      string   `json:"comm"`
	Syscall   string   `json:"syscall"`
	Frames    []string `json:"frames"` // innermost first
	Truncated bool     `json:"truncated,omitempty"`
	Count     uint64   `json:"count"`
}
