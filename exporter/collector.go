// Package exporter turns sockscope's in-kernel counters into Prometheus metrics. Nothing is
// collected between scrapes: each scrape reads the kernel's counter map once, reads each
// namespace's socket gauges from it (with its time-wait count and its listeners' request
// sockets; gauges.go), and builds constant metrics. Namespaces are named
// after their containers, the host's is "host", and all share one view.
package exporter

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader"
	"github.com/sockscope/sockscope/loader/counters"
	"github.com/sockscope/sockscope/loader/sockets"
)

// Namespace is one network namespace the exporter counts.
type Namespace struct {
	Inode uint32
	// Name gives the container label (container names joined by ",", a pod's NAMESPACE/POD,
	// "host", or a --netns name) and the namespace and pod labels.
	Name containers.Name
	Path string // its namespace file, for the socket walk: /proc/PID/ns/net or /run/netns/NAME
	// The containers in it, sandboxes included (none for --netns namespaces). The host's are
	// those on the host's network: --network host, hostNetwork pods.
	Containers []containers.Container
	// Fixed marks the host and the --netns namespaces: they are counted first.
	Fixed bool
}

// nsLabels are the label values every per-namespace series starts with: container, namespace,
// pod.
func (n Namespace) labels(extra ...string) []string {
	return append([]string{n.Name.Name, n.Name.Namespace, n.Name.Pod}, extra...)
}

// nsLabelNames are the per-namespace series' first labels. namespace and pod are Kubernetes's
// (empty elsewhere), so PromQL joins with kube-state-metrics and cAdvisor on(namespace, pod).
func nsLabelNames(extra ...string) []string {
	return append([]string{"container", "namespace", "pod"}, extra...)
}

// Counters is the exporter's kernel side as the collector reads it (counters.Counters; a test's
// fixture in the unit tests).
type Counters interface {
	SetNetns(netns []uint32) error
	Counters(out []counters.Counter) ([]counters.Counter, error)
	Requests() (map[uint32]uint32, error)
	Moves(netns uint32) (counters.Moves, error)
	Sample(nsPath string, walk bool) (counters.NetnsSample, error)
	Stats() ([]counters.ProgramStats, error)
	Lost() (counters.Lost, error)
	Usage(counters int) ([]counters.MapUsage, error)
}

// SocketWalker walks a namespace's TCP tables (sockets.Iterators).
type SocketWalker interface {
	Count(nsPath string) (sockets.Counts, error)
	Snapshot(nsPath string) (sockets.Snapshot, error)
}

// Kernel is what the collector reads: the exporter's counters and the socket iterator.
type Kernel struct {
	Counters Counters
	Sockets  SocketWalker
	// MaxNetns is how many namespaces the kernel maps count at once (--max-netns).
	MaxNetns int
	// Syscalls, when set, adds the syscall metrics (--syscalls).
	Syscalls *Syscalls
	// TopRemotes > 0 adds sockscope_tcp_remote_sockets for that many endpoints per namespace
	// (--top-remotes); the socket walk then returns one record per socket.
	TopRemotes int
	// Walk counts sockscope_tcp_sockets with a walk of every namespace's TCP tables at every
	// scrape (--sockets.walk), as --top-remotes does, instead of from the transitions.
	Walk bool
	// Reconcile is how old a namespace's last walk may get before a scrape walks it again to
	// check its gauges (--sockets.reconcile); 0 never.
	Reconcile time.Duration
}

// Collector is a prometheus.Collector over the kernel's counters.
type Collector struct {
	k       Kernel
	version string

	mu      sync.Mutex           // one scrape at a time; guards the fields below
	ns      map[uint32]Namespace // the namespaces counted, by display names that are all different
	buf     []counters.Counter
	statsOn bool

	// The namespaces that want counting, with when each was first seen: when more want it than
	// the kernel maps hold, the fixed ones and then the earliest seen are counted, and the others
	// wait; one that leaves makes room for the next.
	seen      map[uint32]uint64
	seq       uint64
	untracked int
	base      map[uint32]string // each counted namespace's name before it was made unique
	// Warn says what the collector changed of what it was given (a name taken twice).
	Warn func(string)

	runtimes     map[containers.Info]*runtimeState // by kind and endpoint (Version cleared)
	scrapeErrors uint64
	warned       map[string]time.Time // when each failing part was last reported
	gauges       gaugeState
	gk           gaugeKernel // k.Counters, or a test's fake

	smu      sync.Mutex
	scraping *scrape // the read of the kernel in progress, if any
}

// New returns a collector counting nothing until SetNamespaces.
func New(k Kernel, version string, bpfStats bool) *Collector {
	c := newCollector(k, version, bpfStats)
	if k.Counters != nil {
		c.gk = k.Counters
	}
	return c
}

func newCollector(k Kernel, version string, bpfStats bool) *Collector {
	return &Collector{k: k, version: version, ns: map[uint32]Namespace{}, statsOn: bpfStats, runtimes: map[containers.Info]*runtimeState{},
		seen: map[uint32]uint64{}, base: map[uint32]string{}, Warn: func(string) {}, warned: map[string]time.Time{}, gauges: gaugeState{base: map[uint32]gaugeBase{}}}
}

// SetNamespaces replaces the set of namespaces that want counting. The kernel counts as many as
// its maps hold (Kernel.MaxNetns): the fixed ones (host, --netns) first, then the others in the
// order they were first seen; the rest wait, and sockscope_namespaces_untracked says how many.
// The counters of namespaces that left are deleted, in the kernel and so in the exposition. Every
// counted namespace gets a display name no other one has: a container named "host", or two
// containers of the same name in two runtimes, would otherwise make duplicate series, which the
// registry refuses.
func (c *Collector) SetNamespaces(nss []Namespace) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	counted, inodes, untracked := c.planLocked(nss)

	// The kernel gives a freed namespace inode to the next namespace, and Docker may report the
	// new container's start before the old one's die. A namespace whose containers are all new
	// is a new namespace: its counters start from zero (untracked once, which deletes them).
	// Those that leave go first, so that the maps never hold more than their capacity, even
	// when one namespace takes the place of another in full maps.
	reused := c.reusedLocked(counted)
	keep := make([]uint32, 0, len(inodes))
	for _, ino := range inodes {
		if _, ok := c.ns[ino]; ok && !reused[ino] {
			keep = append(keep, ino)
		}
	}
	if len(keep) < len(c.ns) {
		if err := c.k.Counters.SetNetns(keep); err != nil {
			return err
		}
	}
	if err := c.k.Counters.SetNetns(inodes); err != nil {
		return err
	}
	c.ns, c.untracked = counted, untracked
	// A namespace that left, or whose counters started again from zero, needs a new walk.
	for ino := range c.gauges.base {
		if _, ok := counted[ino]; !ok || reused[ino] {
			delete(c.gauges.base, ino)
		}
	}
	if c.k.Syscalls != nil {
		if err := c.k.Syscalls.SetNetns(inodes); err != nil {
			return err
		}
	}
	return nil
}

// planLocked chooses the namespaces to count among nss and names them: the counted ones by
// inode, their inodes in priority order, and how many wait.
func (c *Collector) planLocked(nss []Namespace) (map[uint32]Namespace, []uint32, int) {
	m := make(map[uint32]Namespace, len(nss))
	for _, n := range nss {
		if old, dup := m[n.Inode]; dup {
			// Two sources name one namespace (a --netns that is also a container's).
			n.Name = old.Name
			n.Fixed = n.Fixed || old.Fixed
			n.Containers = append(old.Containers, n.Containers...)
		}
		m[n.Inode] = n
	}
	for ino := range c.seen {
		if _, ok := m[ino]; !ok {
			delete(c.seen, ino)
		}
	}
	// New ones in the order given (a runtime's list), so that the same events give the same set.
	for _, n := range nss {
		if _, ok := c.seen[n.Inode]; !ok {
			c.seq++
			c.seen[n.Inode] = c.seq
		}
	}
	want := slices.Collect(maps.Keys(m))
	slices.SortFunc(want, func(a, b uint32) int {
		if fa, fb := m[a].Fixed, m[b].Fixed; fa != fb {
			if fa {
				return -1
			}
			return 1
		}
		return cmp.Compare(c.seen[a], c.seen[b])
	})
	limit := len(want)
	if c.k.MaxNetns > 0 {
		limit = min(limit, c.k.MaxNetns)
	}
	counted := make(map[uint32]Namespace, limit)
	for _, ino := range want[:limit] {
		counted[ino] = m[ino]
	}
	inodes := want[:limit]
	c.uniqueNamesLocked(counted, inodes)
	return counted, inodes, len(want) - limit
}

// uniqueNamesLocked gives each counted namespace a display name of its own, in priority order
// (inodes): one that had a name keeps it while it is counted, so that its series stay the same;
// a name already taken becomes "NAME (netns INODE)".
func (c *Collector) uniqueNamesLocked(counted map[uint32]Namespace, inodes []uint32) {
	taken := map[string]bool{}
	kept := map[uint32]bool{}
	for _, ino := range inodes {
		n := counted[ino]
		if old, ok := c.ns[ino]; ok && c.base[ino] == n.Name.Name && !taken[old.Name.Name] {
			n.Name.Name = old.Name.Name
			counted[ino] = n
			taken[n.Name.Name], kept[ino] = true, true
		}
	}
	base := make(map[uint32]string, len(inodes))
	for _, ino := range inodes {
		n := counted[ino]
		base[ino] = c.base[ino]
		if kept[ino] {
			continue
		}
		base[ino] = n.Name.Name
		name := n.Name.Name
		for taken[name] {
			name = fmt.Sprintf("%s (netns %d)", name, ino)
		}
		if name != n.Name.Name {
			c.Warn(fmt.Sprintf("network namespace %d is named %q like another one; its series are container=%q", ino, n.Name.Name, name))
			n.Name.Name = name
			counted[ino] = n
		}
		taken[name] = true
	}
	c.base = base
}

// reusedLocked returns the inodes that name other containers than before, none of the old ones.
func (c *Collector) reusedLocked(next map[uint32]Namespace) map[uint32]bool {
	var reused map[uint32]bool
	for ino, n := range next {
		old, ok := c.ns[ino]
		if !ok || len(old.Containers) == 0 || len(n.Containers) == 0 {
			continue
		}
		same := false
		for _, a := range old.Containers {
			for _, b := range n.Containers {
				if a.ID == b.ID {
					same = true
				}
			}
		}
		if !same {
			if reused == nil {
				reused = map[uint32]bool{}
			}
			reused[ino] = true
		}
	}
	return reused
}

// runtimeState is what the exporter says about one container runtime.
type runtimeState struct {
	up     bool
	errors uint64
	syncs  uint64
}

// RuntimeUp records whether a runtime answered a list of its containers: each answer counts as
// a sync, each failure as an error.
func (c *Collector) RuntimeUp(rt containers.Info, up bool) {
	rt.Version = ""
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.runtimes[rt]
	if st == nil {
		st = &runtimeState{}
		c.runtimes[rt] = st
	}
	st.up = up
	if up {
		st.syncs++
	} else {
		st.errors++
	}
}

var (
	lblContainer = nsLabelNames()

	descTransitions = prometheus.NewDesc("sockscope_tcp_state_transitions_total",
		"TCP state transitions in the container's network namespace.", nsLabelNames("from", "to"), nil)
	descSockets = prometheus.NewDesc("sockscope_tcp_sockets",
		"TCP sockets by state at scrape time, as `ss -tan` in the namespace shows them (TIME_WAIT and SYN_RECV request sockets included).", nsLabelNames("state"), nil)
	descConnects = prometheus.NewDesc("sockscope_tcp_connects_total",
		"Outcomes of TCP connects that reached SYN_SENT: success, or the errno the connect failed with.", nsLabelNames("result"), nil)
	descDuration = prometheus.NewDesc("sockscope_tcp_connect_duration_seconds",
		"Time from SYN_SENT to ESTABLISHED of successful connects.", lblContainer, nil)
	descRetransmits = prometheus.NewDesc("sockscope_tcp_retransmits_total",
		"TCP segments retransmitted (SYN retransmits included).", lblContainer, nil)
	descResetsSent = prometheus.NewDesc("sockscope_tcp_resets_sent_total",
		"TCP resets sent, including those answering segments no socket wanted (connects to closed ports).", lblContainer, nil)
	descResetsReceived = prometheus.NewDesc("sockscope_tcp_resets_received_total",
		"TCP resets received by a socket.", lblContainer, nil)
	descEphemeral = prometheus.NewDesc("sockscope_tcp_ephemeral_ports",
		"Ports in the namespace's net.ipv4.ip_local_port_range: how many connections one client address can have open (or in TIME_WAIT) to one destination.", lblContainer, nil)
	descTWReuse = prometheus.NewDesc("sockscope_tcp_tw_reuse",
		"The namespace's net.ipv4.tcp_tw_reuse (0 off, 1 on, 2 loopback only).", lblContainer, nil)
	descInfo = prometheus.NewDesc("sockscope_container_info",
		"Always 1, one row per container (a pod's sandbox is not one): what a container label stands for, to join in PromQL. The host's namespace is container=\"host\"; containers on the host's network (hostNetwork pods, --network host) are listed under it with host_network=\"true\".",
		nsLabelNames("container_name", "container_id", "image", "runtime", "compose_project", "compose_service", "host_network"), nil)

	descRuns = prometheus.NewDesc("sockscope_bpf_program_runs_total",
		"Runs of each of sockscope's BPF programs (counted only while BPF statistics are enabled, see sockscope_bpf_stats_enabled).", []string{"program"}, nil)
	descRunTime = prometheus.NewDesc("sockscope_bpf_program_run_seconds_total",
		"CPU time spent in each of sockscope's BPF programs (counted only while BPF statistics are enabled).", []string{"program"}, nil)
	descStatsOn = prometheus.NewDesc("sockscope_bpf_stats_enabled",
		"1 when the kernel keeps BPF run statistics (--bpf-stats, or kernel.bpf_stats_enabled).", nil, nil)
	descLost = prometheus.NewDesc("sockscope_lost_events_total",
		"Events the kernel side could not count: counters_full (raise --max-counters), handshakes_full (connect durations not measured), listeners_full (request sockets of listeners past the 65,536 its table holds not counted), recursion (a program was already running on that CPU).", []string{"reason"}, nil)
	descMapEntries = prometheus.NewDesc("sockscope_bpf_map_entries",
		"Entries in use in each of the exporter's BPF maps.", []string{"map"}, nil)
	descMapCapacity = prometheus.NewDesc("sockscope_bpf_map_capacity",
		"Capacity of each of the exporter's BPF maps.", []string{"map"}, nil)
	descPartSuccess = prometheus.NewDesc("sockscope_scrape_collector_success",
		"1 when this part of the scrape read what it exposes, 0 when it failed (its metrics are then left out; the others are still exposed).", []string{"collector"}, nil)
	descPartDuration = prometheus.NewDesc("sockscope_scrape_collector_duration_seconds",
		"Time this part of the scrape took.", []string{"collector"}, nil)
	descScrape = prometheus.NewDesc("sockscope_scrape_duration_seconds",
		"Time this scrape took to read the kernel.", nil, nil)
	descScrapeErrors = prometheus.NewDesc("sockscope_scrape_errors_total",
		"Parts of scrapes that failed (see sockscope_scrape_collector_success; a namespace that vanished meanwhile, such as an exited container's, is no failure).", nil, nil)
	descRuntimeErrors = prometheus.NewDesc("sockscope_runtime_errors_total",
		"Failed calls to a container runtime and broken event streams; sockscope reconnects with backoff.", []string{"runtime", "endpoint"}, nil)
	descRuntimeSyncs = prometheus.NewDesc("sockscope_runtime_syncs_total",
		"Times the running containers and pods were listed from the container runtime: at start, after each change it reported, and when the kernel side met a namespace nobody had named.", []string{"runtime", "endpoint"}, nil)
	descRuntimeUp = prometheus.NewDesc("sockscope_runtime_up",
		"1 when the container runtime answers, 0 while it does not (names are kept from the last answer).", []string{"runtime", "endpoint"}, nil)
	descNamespaces = prometheus.NewDesc("sockscope_namespaces",
		"Network namespaces counted: the host, --netns ones and those of running containers and pods, at most --max-netns.", nil, nil)
	descUntracked = prometheus.NewDesc("sockscope_namespaces_untracked",
		"Network namespaces seen but not counted for lack of room (--max-netns): those of the containers and pods seen last wait, and are counted when one leaves.", nil, nil)
	descBuild = prometheus.NewDesc("sockscope_build_info",
		"Always 1: the sockscope version and the Go version it was built with.", []string{"version", "goversion"}, nil)
)

// Describe sends nothing: the metric set depends on the containers, so the collector is
// unchecked, as client_golang allows.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect reads the kernel and sends the metrics of this scrape. Scrapes that arrive while one
// reads the kernel wait for it and get its metrics: reading the kernel is the cost, so two
// Prometheus servers (an HA pair) scraping at once cost one read, and N concurrent scrapes do not
// queue for N reads.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.smu.Lock()
	if s := c.scraping; s != nil {
		c.smu.Unlock()
		<-s.done
		for _, m := range s.metrics {
			ch <- m
		}
		return
	}
	s := &scrape{done: make(chan struct{})}
	c.scraping = s
	c.smu.Unlock()
	defer func() {
		c.smu.Lock()
		c.scraping = nil
		c.smu.Unlock()
		close(s.done)
	}()
	mine := make(chan prometheus.Metric, 256)
	go func() {
		defer close(mine)
		c.collect(mine)
	}()
	for m := range mine {
		s.metrics = append(s.metrics, m)
		ch <- m
	}
}

// scrape is one read of the kernel, shared by the scrapes that arrive while it runs.
type scrape struct {
	done    chan struct{}
	metrics []prometheus.Metric
}

// The collector's parts, each reported on its own as node_exporter does: one that fails says so in
// sockscope_scrape_collector_success and the others' metrics are still exposed.
const (
	partConnections = "connections" // transitions, connects, durations, retransmits, resets
	partSockets     = "sockets"     // sockets by state, port range, tw_reuse
	partSyscalls    = "syscalls"    // --syscalls
	partPrograms    = "programs"    // the BPF programs' statistics, losses and maps
)

// collect reads the kernel and sends the metrics.
func (c *Collector) collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()

	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, c.version, runtime.Version())
	ch <- prometheus.MustNewConstMetric(descNamespaces, prometheus.GaugeValue, float64(len(c.ns)))
	ch <- prometheus.MustNewConstMetric(descUntracked, prometheus.GaugeValue, float64(c.untracked))
	for _, n := range c.sortedNamespaces() {
		c.collectInfo(ch, n)
	}

	part := func(name string, f func() error) {
		t := time.Now()
		err := f()
		ok := 1.0
		if err != nil {
			ok = 0
			c.scrapeErrors++
			c.failed(name, err)
		}
		ch <- prometheus.MustNewConstMetric(descPartSuccess, prometheus.GaugeValue, ok, name)
		ch <- prometheus.MustNewConstMetric(descPartDuration, prometheus.GaugeValue, time.Since(t).Seconds(), name)
	}
	var countersErr error
	part(partConnections, func() error {
		c.buf, countersErr = c.k.Counters.Counters(c.buf[:0])
		if countersErr != nil {
			c.buf = c.buf[:0]
			return fmt.Errorf("read the connection counters: %w", countersErr)
		}
		c.collectCounters(ch)
		return nil
	})
	part(partSockets, func() error { return c.collectSockets(ch, start, countersErr) })
	if c.k.Syscalls != nil {
		part(partSyscalls, func() error { return c.k.Syscalls.collect(ch, c.ns) })
	}
	part(partPrograms, func() error { return c.collectSelf(ch) })
	ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.CounterValue, float64(c.scrapeErrors))
	ch <- prometheus.MustNewConstMetric(descScrape, prometheus.GaugeValue, time.Since(start).Seconds())
}

// failed reports a part's failure through Warn, once a minute per part at most: a scrape every
// second must not flood the log with one broken part.
func (c *Collector) failed(part string, err error) {
	now := time.Now()
	if last, ok := c.warned[part]; ok && now.Sub(last) < time.Minute {
		return
	}
	c.warned[part] = now
	c.Warn(fmt.Sprintf("the %s collector failed: %v (its metrics are left out of the scrape; sockscope_scrape_collector_success{collector=%q} is 0)", part, err, part))
}

// collectSockets sends each namespace's sockets by state, kept from the transitions (the moves
// counted with the connection counters, which countersErr says could not be read), or walked.
// A namespace that could not be counted is left out and makes the part fail; one that vanished
// meanwhile (an exited container's) is no failure.
func (c *Collector) collectSockets(ch chan<- prometheus.Metric, start time.Time, countersErr error) error {
	walking := c.k.Walk || c.k.TopRemotes > 0
	var moves map[uint32]*counters.Moves
	var requests map[uint32]uint32
	var reconcile uint32 // the namespace whose gauges this scrape checks with a walk, if any
	if !walking {
		if countersErr != nil {
			return fmt.Errorf("the socket gauges need the connection counters: %w", countersErr)
		}
		moves = movesOf(c.buf)
		var err error
		if requests, err = c.k.Counters.Requests(); err != nil {
			return fmt.Errorf("read the SYN queues: %w", err)
		}
		reconcile = c.dueForWalk(start)
	}
	var errs []error
	for _, n := range c.sortedNamespaces() {
		var counts sockets.Counts
		var err error
		if walking {
			counts, err = c.countSockets(ch, n)
		} else {
			counts, err = c.gaugeSockets(n, moves[n.Inode], requests[n.Inode], n.Inode == reconcile, start)
		}
		if err != nil {
			if !errors.Is(err, loader.ErrNetnsGone) {
				errs = append(errs, fmt.Errorf("%s: %w", n.Name.Name, err))
			}
			continue
		}
		for st := events.State(1); st <= 11; st++ {
			ch <- prometheus.MustNewConstMetric(descSockets, prometheus.GaugeValue, float64(counts.States[st]), n.labels(st.String())...)
		}
		if counts.PortRange[0] > 0 && counts.PortRange[1] >= counts.PortRange[0] {
			ch <- prometheus.MustNewConstMetric(descEphemeral, prometheus.GaugeValue, float64(counts.PortRange[1]-counts.PortRange[0]+1), n.labels()...)
		}
		if counts.TWReuse >= 0 {
			ch <- prometheus.MustNewConstMetric(descTWReuse, prometheus.GaugeValue, float64(counts.TWReuse), n.labels()...)
		}
	}
	if !walking {
		ch <- prometheus.MustNewConstMetric(descGaugeWalks, prometheus.CounterValue, float64(c.gauges.walks))
		ch <- prometheus.MustNewConstMetric(descGaugeCorrections, prometheus.CounterValue, float64(c.gauges.corrections))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d namespaces not counted: %w", len(errs), errors.Join(errs...))
	}
	return nil
}

// countSockets counts one namespace's sockets by state: in the kernel, or, with --top-remotes,
// from the full table, which also gives the per-endpoint breakdown.
func (c *Collector) countSockets(ch chan<- prometheus.Metric, n Namespace) (sockets.Counts, error) {
	if c.k.TopRemotes <= 0 {
		return c.k.Sockets.Count(n.Path)
	}
	snap, err := c.k.Sockets.Snapshot(n.Path)
	if err != nil {
		return sockets.Counts{}, err
	}
	states, byRemote, err := remoteCounts(snap)
	if err != nil {
		return sockets.Counts{}, err
	}
	topRemotes(ch, n, byRemote, c.k.TopRemotes)
	return sockets.Counts{States: states, PortRange: snap.PortRange, TWReuse: snap.TWReuse}, nil
}

// gaugeSockets counts one namespace's sockets by state from its gauges: from a walk when it has
// none yet or this scrape checks it (walk), otherwise from the moves since its walk; and, at
// every scrape, its time-wait count and its listeners' request sockets.
func (c *Collector) gaugeSockets(n Namespace, moves *counters.Moves, requests uint32, walk bool, now time.Time) (sockets.Counts, error) {
	b, ok := c.gauges.base[n.Inode]
	var s counters.NetnsSample
	var full [16]uint64
	if !ok || walk {
		s2, nb, walks, err := walkBase(c.gk, n, now)
		c.gauges.walks += uint64(walks)
		if err != nil {
			return sockets.Counts{}, err
		}
		s = s2
		switch {
		case !ok || !b.settled:
			b = nb
		case nb.settled:
			c.gauges.corrections += disagreement(b.full(nb.moves), nb.walk)
			b = nb
		default:
			b.at = now // sockets kept moving: the old base stays, checked again at the next interval
		}
		c.gauges.base[n.Inode] = b
		full = b.full(nb.moves)
	} else {
		var err error
		if s, err = c.gk.Sample(n.Path, false); err != nil {
			return sockets.Counts{}, err
		}
		var m counters.Moves
		if moves != nil {
			m = *moves
		}
		full = b.full(m)
	}
	states := socketStates(full, requests, s.TimeWait)
	out := sockets.Counts{PortRange: s.PortRange, TWReuse: s.TWReuse}
	for st, v := range states {
		out.States[st] = uint32(v)
	}
	return out, nil
}

// dueForWalk returns the counted namespace whose gauges this scrape checks with a walk, if any:
// one whose last walk was not exact (its sockets moved during it), else the one whose last walk
// is the oldest, if that is older than Kernel.Reconcile. One namespace per scrape, so that a
// scrape's cost stays that of one walk however many namespaces there are.
func (c *Collector) dueForWalk(now time.Time) uint32 {
	var due uint32
	var dueSettled bool
	var oldest time.Time
	for ino := range c.ns {
		b, ok := c.gauges.base[ino]
		if !ok || (b.settled && (c.k.Reconcile <= 0 || now.Sub(b.at) < c.k.Reconcile)) {
			continue
		}
		// Unsettled first, then the oldest.
		if due == 0 || (dueSettled && !b.settled) || (dueSettled == b.settled && b.at.Before(oldest)) {
			due, dueSettled, oldest = ino, b.settled, b.at
		}
	}
	return due
}

func (c *Collector) sortedNamespaces() []Namespace {
	out := make([]Namespace, 0, len(c.ns))
	for _, n := range c.ns {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Namespace) int { return strings.Compare(a.Name.Name, b.Name.Name) })
	return out
}

// perNetns gathers one namespace's counters for the metrics that need several of them.
type perNetns struct {
	seen     map[uint16]bool // connect results with a counter
	buckets  []uint64        // per bucket, the last one above the last bound
	sumNs    uint64
	retrans  uint64
	rstSent  uint64
	rstRecvd uint64
}

func (c *Collector) collectCounters(ch chan<- prometheus.Metric) {
	per := make(map[uint32]*perNetns, len(c.ns))
	for ino := range c.ns {
		per[ino] = &perNetns{buckets: make([]uint64, len(counters.DurationBuckets)+1), seen: map[uint16]bool{}}
	}
	for _, k := range c.buf {
		n, ok := c.ns[k.Netns]
		if !ok {
			continue // left the set between the kernel's count and the prune
		}
		p := per[k.Netns]
		switch k.Kind {
		case counters.KindTransition:
			from, to := events.State(k.Arg>>8), events.State(k.Arg&0xff)
			ch <- prometheus.MustNewConstMetric(descTransitions, prometheus.CounterValue, float64(k.Value), n.labels(from.String(), to.String())...)
		case counters.KindConnect:
			p.seen[k.Arg] = true
			ch <- prometheus.MustNewConstMetric(descConnects, prometheus.CounterValue, float64(k.Value), n.labels(connectResult(k.Arg))...)
		case counters.KindDuration:
			if int(k.Arg) < len(p.buckets) {
				p.buckets[k.Arg] += k.Value
			}
		case counters.KindDurationSum:
			p.sumNs += k.Value
		case counters.KindRetransmit:
			p.retrans += k.Value
		case counters.KindResetSent:
			p.rstSent += k.Value
		case counters.KindResetReceived:
			p.rstRecvd += k.Value
		}
	}
	for ino, p := range per {
		n := c.ns[ino]
		// Present at 0 from the start, so that increase() and rate() see a container's first
		// connects and first failures (a series born at 40 shows no increase).
		for _, r := range initialResults {
			if !p.seen[r] {
				ch <- prometheus.MustNewConstMetric(descConnects, prometheus.CounterValue, 0, n.labels(connectResult(r))...)
			}
		}
		cum := make(map[float64]uint64, len(counters.DurationBuckets))
		var total uint64
		for i, le := range counters.DurationBuckets {
			total += p.buckets[i]
			cum[le.Seconds()] = total
		}
		total += p.buckets[len(counters.DurationBuckets)]
		ch <- prometheus.MustNewConstHistogram(descDuration, total, float64(p.sumNs)/1e9, cum, n.labels()...)
		ch <- prometheus.MustNewConstMetric(descRetransmits, prometheus.CounterValue, float64(p.retrans), n.labels()...)
		ch <- prometheus.MustNewConstMetric(descResetsSent, prometheus.CounterValue, float64(p.rstSent), n.labels()...)
		ch <- prometheus.MustNewConstMetric(descResetsReceived, prometheus.CounterValue, float64(p.rstRecvd), n.labels()...)
	}
}

// initialResults are the connect results every namespace exposes from its start: success and
// the failures seen on the state path.
var initialResults = []uint16{0, uint16(syscall.ECONNREFUSED), uint16(syscall.ETIMEDOUT),
	uint16(syscall.EADDRNOTAVAIL), uint16(syscall.ECONNABORTED), uint16(syscall.EHOSTUNREACH)}

func connectResult(errno uint16) string {
	if errno == 0 {
		return "success"
	}
	return events.ErrnoName(syscall.Errno(errno))
}

func (c *Collector) collectInfo(ch chan<- prometheus.Metric, n Namespace) {
	rows := 0
	for _, ct := range n.Containers {
		if ct.Sandbox {
			continue
		}
		hostNet := "false"
		if n.Name == containers.HostName {
			hostNet = "true"
		}
		l := ct.Labels
		// namespace and pod are the container's own pod: the namespace's for a pod, and for a
		// hostNetwork pod's container listed under the host, that pod's.
		ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, n.Name.Name, ct.Pod.Namespace, ct.Pod.Name,
			ct.Name, ct.ShortID(), ct.Image, ct.Runtime, l["com.docker.compose.project"], l["com.docker.compose.service"], hostNet)
		rows++
	}
	if rows == 0 {
		// The host, a --netns namespace, or a pod whose containers have not started: one row,
		// so that every container label has its info.
		ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, n.labels("", "", "", "", "", "", "false")...)
	}
}

func (c *Collector) collectSelf(ch chan<- prometheus.Metric) error {
	var errs []error
	var recursion uint64
	if stats, err := c.k.Counters.Stats(); err == nil {
		for _, s := range stats {
			ch <- prometheus.MustNewConstMetric(descRuns, prometheus.CounterValue, float64(s.Runs), s.Name)
			ch <- prometheus.MustNewConstMetric(descRunTime, prometheus.CounterValue, s.RunTime.Seconds(), s.Name)
			recursion += s.Lost
		}
	} else {
		errs = append(errs, fmt.Errorf("read the programs' statistics: %w", err))
	}
	on := 0.0
	if c.statsOn || statsEnabled() {
		on = 1
	}
	ch <- prometheus.MustNewConstMetric(descStatsOn, prometheus.GaugeValue, on)
	if l, err := c.k.Counters.Lost(); err == nil {
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(l.CountersFull), "counters_full")
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(l.HandshakesFull), "handshakes_full")
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(l.ListenersFull), "listeners_full")
	} else {
		errs = append(errs, fmt.Errorf("read the lost counters: %w", err))
	}
	ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(recursion), "recursion")
	if usage, err := c.k.Counters.Usage(len(c.buf)); err == nil {
		for _, u := range usage {
			ch <- prometheus.MustNewConstMetric(descMapEntries, prometheus.GaugeValue, float64(u.Entries), u.Name)
			ch <- prometheus.MustNewConstMetric(descMapCapacity, prometheus.GaugeValue, float64(u.Capacity), u.Name)
		}
	} else {
		errs = append(errs, fmt.Errorf("read the maps' usage: %w", err))
	}
	for rt, st := range c.runtimes {
		up := 0.0
		if st.up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descRuntimeErrors, prometheus.CounterValue, float64(st.errors), rt.Kind, rt.Endpoint)
		ch <- prometheus.MustNewConstMetric(descRuntimeSyncs, prometheus.CounterValue, float64(st.syncs), rt.Kind, rt.Endpoint)
		ch <- prometheus.MustNewConstMetric(descRuntimeUp, prometheus.GaugeValue, up, rt.Kind, rt.Endpoint)
	}
	return errors.Join(errs...)
}

// statsEnabled reads kernel.bpf_stats_enabled: someone else (bpftool, another tool) may have
// turned the statistics on.
func statsEnabled() bool {
	b, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	return err == nil && len(b) > 0 && b[0] == '1'
}
