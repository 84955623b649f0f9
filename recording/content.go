package recording

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader"
)

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

// Containers is every container seen so far, running or stopped.
type Containers struct {
	List []Container `json:"containers"`
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
	Records   []byte // events.SocketRecordSize each
	Owners    []byte // events.OwnerRecordSize each, only those owning a socket in Records
}

// Decode turns the snapshot into sockets, as `sockscope sockets` shows them.
func (s *SocketSnapshot) Decode() ([]events.Socket, error) {
	owners, err := events.DecodeOwners(s.Owners)
	if err != nil {
		return nil, err
	}
	return events.DecodeSockets(s.Records, s.Netns, owners)
}

const socketsHeader = 24

// EncodeSockets is the payload of a sockets block:
// netns u32 | port range low i32 | high i32 | tcp_tw_reuse i32 | records u32 | owners u32 | records | owners.
func EncodeSockets(s *SocketSnapshot) []byte {
	b := make([]byte, socketsHeader, socketsHeader+len(s.Records)+len(s.Owners))
	le := binary.LittleEndian
	le.PutUint32(b[0:], s.Netns)
	le.PutUint32(b[4:], uint32(int32(s.PortRange[0])))
	le.PutUint32(b[8:], uint32(int32(s.PortRange[1])))
	le.PutUint32(b[12:], uint32(int32(s.TWReuse)))
	le.PutUint32(b[16:], uint32(len(s.Records)/events.SocketRecordSize))
	le.PutUint32(b[20:], uint32(len(s.Owners)/events.OwnerRecordSize))
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
	if want := nrec*events.SocketRecordSize + nown*events.OwnerRecordSize; uint64(len(body)) != want {
		return s, fmt.Errorf("%d sockets and %d owners need %d bytes, the block has %d", nrec, nown, want, len(body))
	}
	s.Records = slices.Clone(body[:nrec*events.SocketRecordSize])
	s.Owners = slices.Clone(body[nrec*events.SocketRecordSize:])
	return s, nil
}

// Timed is a value with the time it was recorded.
type Timed[T any] struct {
	Time  time.Time
	Value T
}

// Recording is a whole file, decoded.
type Recording struct {
	Meta       Meta
	Events     []events.Event
	Sockets    []SocketSnapshot
	Syscalls   []Timed[loader.SyscallSnapshot]
	Facts      []Timed[Facts]
	Containers []Timed[Containers]
	Lost       Lost
	End        *End      // nil when the file ended without one (the recorder was killed, or the file was cut)
	Last       time.Time // time of the last block
	Rotations  int       // how many times the file was continued after --max-size
	Size       int64
}

// Clock converts the recording's event times to wall-clock time.
func (r *Recording) Clock() events.Clock { return events.ClockWithOffset(r.Meta.ClockOffset) }

// Load reads a whole recording. Every problem is a *FormatError with the offset of the block.
func Load(rd io.Reader) (*Recording, error) {
	r, err := NewReader(rd)
	if err != nil {
		return nil, err
	}
	rec := &Recording{}
	seenMeta := false
	for {
		b, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		bad := func(format string, a ...any) error {
			return &FormatError{b.Offset, ErrCorrupt, fmt.Sprintf("%s block: ", b.Type) + fmt.Sprintf(format, a...)}
		}
		if !seenMeta && b.Type != BlockMeta {
			return nil, bad("the file must start with a meta block")
		}
		if rec.End != nil && b.Type != BlockMeta {
			return nil, bad("found after the end block")
		}
		at := time.Unix(0, b.Time).UTC()
		rec.Last = at
		switch b.Type {
		case BlockMeta:
			var m Meta
			if err := json.Unmarshal(b.Payload, &m); err != nil {
				return nil, bad("%v", err)
			}
			if !seenMeta {
				rec.Meta = m
			} else if rec.End != nil && rec.End.Reason == "max-size" {
				// Files are self-contained: a rotated file starts with the meta again.
				rec.End = nil
				rec.Rotations++
			}
			seenMeta = true
		case BlockContainers:
			var c Containers
			if err := json.Unmarshal(b.Payload, &c); err != nil {
				return nil, bad("%v", err)
			}
			rec.Containers = append(rec.Containers, Timed[Containers]{at, c})
		case BlockFacts:
			var f Facts
			if err := json.Unmarshal(b.Payload, &f); err != nil {
				return nil, bad("%v", err)
			}
			rec.Facts = append(rec.Facts, Timed[Facts]{at, f})
		case BlockEvents:
			if len(b.Payload)%events.RecordSize != 0 {
				return nil, bad("%d bytes is not a whole number of %d-byte events", len(b.Payload), events.RecordSize)
			}
			for p := b.Payload; len(p) > 0; p = p[events.RecordSize:] {
				var e events.Event
				if err := events.Decode(p, &e); err != nil {
					return nil, bad("%v", err)
				}
				rec.Events = append(rec.Events, e)
			}
		case BlockSockets:
			s, err := decodeSockets(b.Payload)
			if err != nil {
				return nil, bad("%v", err)
			}
			s.Time = at
			rec.Sockets = append(rec.Sockets, s)
		case BlockSyscalls:
			var s loader.SyscallSnapshot
			if err := json.Unmarshal(b.Payload, &s); err != nil {
				return nil, bad("%v", err)
			}
			rec.Syscalls = append(rec.Syscalls, Timed[loader.SyscallSnapshot]{at, s})
		case BlockLost:
			if err := json.Unmarshal(b.Payload, &rec.Lost); err != nil {
				return nil, bad("%v", err)
			}
		case BlockEnd:
			var e End
			if err := json.Unmarshal(b.Payload, &e); err != nil {
				return nil, bad("%v", err)
			}
			rec.End = &e
		}
	}
	if !seenMeta {
		return nil, &FormatError{r.Offset(), ErrTruncated, "the file has a header but no blocks"}
	}
	rec.Size = r.Offset()
	return rec, nil
}
