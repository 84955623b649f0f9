package diagnose

import "time"

// Report is an incident summary of one recording: per namespace (container or host), a
// timeline of what happened in each interval, the remote endpoints it talked to most, and its
// syscall hotspots. It is built by Summarize and written as text or as a self-contained HTML page.
type Report struct {
	Source   string        // the file it was read from
	Hostname string        // the recording machine
	Kernel   string        // its kernel release
	Start    time.Time     // first and last moment covered
	End      time.Time     //
	Interval time.Duration // width of one timeline step
	Lost     uint64        // events the kernel could not hand over (the counts below miss them)
	// Notes say how the report differs from the recording: a clock that stepped back, steps
	// widened to bound memory, endpoints left out.
	Notes    []string
	Findings []Finding // what diagnose found, most severe first
	Targets  []Target  // one per network namespace, the host first, then by name
}

// Target is one network namespace: a container (or several sharing it), the host, or a --netns.
type Target struct {
	Name string
	ID   string // short container ID, "" for the host and plain namespaces
	// The Kubernetes pod, empty outside Kubernetes.
	K8sNamespace string `json:"k8s_namespace"`
	K8sPod       string `json:"k8s_pod"`
	Image        string
	Netns        uint32
	Started      time.Time // zero when it ran before the recording began
	Stopped      time.Time // zero when it still ran at the end
	ExitCode     int       // when Stopped is set
	Facts        NetnsFacts

	Timeline   []Step          // one per Interval, from Start, same length for every target
	TopRemotes []RemoteCount   // by connects, most first
	Syscalls   []SyscallCount  // by count, most first
	Errors     []SyscallErrors // failures by syscall and errno, most first
	// Stacks are the user stacks of its processes' syscalls (recorded with --stacks), most
	// counted first; StacksOther counts the calls of the stacks left out.
	Stacks      []StackCount
	StacksOther uint64 `json:",omitempty"`
}

// NetnsFacts are the settings that explain port and connection incidents.
type NetnsFacts struct {
	PortRange [2]int // net.ipv4.ip_local_port_range
	TWReuse   int    // net.ipv4.tcp_tw_reuse
	Somaxconn int    // net.core.somaxconn
}

// Step is what one namespace did during one interval of the timeline.
type Step struct {
	Start    time.Time
	Connects int            // connect() outcomes seen, successes and failures
	Failures map[string]int // failed connects by errno name (ECONNREFUSED, EADDRNOTAVAIL, ...)
	Resets   int            // connections that went from ESTABLISHED or CLOSE_WAIT straight to CLOSE
	// From the socket snapshot taken at the end of the step (absent: no snapshot in this step).
	HasSnapshot bool
	States      map[string]int // sockets by state name (ESTABLISHED, TIME_WAIT, ...)
}

// RemoteCount is the traffic to one remote endpoint (address:port).
type RemoteCount struct {
	Endpoint string
	Connects int
	Failures int
	TimeWait int // TIME_WAIT sockets to it in the last snapshot
}

// SyscallCount is one process's use of one syscall.
type SyscallCount struct {
	Comm    string
	Pid     uint32
	Syscall string
	Count   uint64
	Errors  uint64
}

// SyscallErrors is how often one syscall of one process failed with one errno.
type SyscallErrors struct {
	Comm    string
	Pid     uint32
	Syscall string
	Errno   string
	Count   uint64
}

// Severity orders findings.
type Severity int

const (
	Info Severity = iota
	Warning
	Critical
)

func (s Severity) String() string {
	switch s {
	case Critical:
		return "critical"
	case Warning:
		return "warning"
	}
	return "info"
}

// Finding is one diagnosis: what is wrong, where, the numbers that show it, how to check it by
// hand, and how to fix it.
type Finding struct {
	Kind      string // port_exhaustion, leak_at_limit, connection_leak, fd_limit, connect_refused, server_refusal, reset_storm, retransmits, unclean_stop
	Severity  Severity
	Container string // the namespace's display name ("host" for the host)
	// The Kubernetes pod, empty outside Kubernetes.
	K8sNamespace, K8sPod string
	Netns                uint32
	Summary              string             // one line
	Evidence             []string           // the numbers, one fact per line
	Numbers              map[string]float64 // the same numbers, by name, for JSON and tests
	Verify               string             // the command that shows it by hand
	Fix                  string
}
