package diagnose

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/events"
)

// Thresholds of the detectors. A finding needs numbers well beyond noise: these are the points
// where a person looking at the same data would start to worry.
const (
	// portUseWarn is the share of the ephemeral range held towards one destination that is
	// reported even before connect() fails.
	portUseWarn = 0.8
	// A leak: at least leakMinSnapshots snapshots in which connections to one destination never
	// fall, end at least leakFactor times where they began, and grow by at least leakMinGrowth.
	leakMinSnapshots = 4
	leakFactor       = 2
	leakMinGrowth    = 20
	// A leak that reached a ceiling: connections to one destination rose by at least
	// limitMinGrowth to at least leakFactor times where they began, then held within
	// limitSlack of the ceiling for at least limitMinSnapshots snapshots, while at least
	// limitMinTurnedAway new connects to it failed or were closed right after the handshake.
	limitMinGrowth     = 10
	limitMinSnapshots  = 2
	limitMinTurnedAway = 3
	// refusedMin connects refused by one destination; also the least connections closed by the
	// server right after the handshake that make a server_refusal, when they are most of them.
	refusedMin = 5
	// resetMin connections to one destination cut by resets, at least resetShare of its connections.
	resetMin   = 20
	resetShare = 0.1
	// retransMin sockets to one destination with retransmissions pending in one snapshot.
	retransMin = 5
	// stopWindow is how close to a container's stop its connections' ends count as the stop's.
	stopWindow = 2 * time.Second
	// exitKilled is the exit code of a process ended by SIGKILL (128 + 9), what docker stop
	// does once the stop timeout passes without the container exiting on SIGTERM.
	exitKilled = 137
)

// detect runs every detector, most severe findings first.
func (v *view) detect() []Finding {
	var out []Finding
	for _, ns := range v.netns {
		s := v.ns[ns]
		out = append(out, v.portExhaustion(s)...)
		out = append(out, v.connectionLeak(s)...)
		out = append(out, v.fdLimit(ns)...)
		out = append(out, v.refusals(s)...)
		out = append(out, v.serverRefusals(s)...)
		out = append(out, v.resets(s)...)
		out = append(out, v.retransmits(s)...)
		out = append(out, v.uncleanStop(s)...)
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(b.Severity, a.Severity), strings.Compare(a.Container, b.Container), strings.Compare(a.Kind, b.Kind))
	})
	return out
}

func (v *view) finding(kind string, sev Severity, ns uint32) Finding {
	n := v.name(ns)
	return Finding{Kind: kind, Severity: sev, Container: n.Name, K8sNamespace: n.Namespace, K8sPod: n.Pod, Netns: ns, Numbers: map[string]float64{}}
}

// inNetns is how a person runs cmd in the namespace: through the container's PID, by the
// namespace's name, or directly on the host.
func (v *view) inNetns(ns uint32, cmd string) string {
	if ns == v.f.Meta.HostNetns {
		return cmd
	}
	if c, ok := v.container(ns); ok {
		switch {
		case c.K8sPod != "":
			// crictl, on the node: the pod's sandbox PID from its verbose status.
			return fmt.Sprintf("nsenter -t $(crictl inspectp -o go-template --template '{{.info.pid}}' $(crictl pods -q --namespace %s --name %s)) -n %s",
				shellQuote(c.K8sNamespace), shellQuote(c.K8sPod), cmd)
		case c.Runtime == "podman":
			return fmt.Sprintf("nsenter -t $(podman inspect -f '{{.State.Pid}}' %s) -n %s", shellQuote(c.Name), cmd)
		}
		return fmt.Sprintf("nsenter -t $(docker inspect -f '{{.State.Pid}}' %s) -n %s", shellQuote(c.Name), cmd)
	}
	if name := v.f.Meta.NetnsNames[ns]; name != "" {
		return fmt.Sprintf("ip netns exec %s %s", shellQuote(name), cmd)
	}
	return fmt.Sprintf("nsenter --net=/proc/PID/ns/net %s  # PID: any process in netns %d", cmd, ns)
}

// shellQuote quotes s for a shell when it holds anything but plain name characters, so that a
// name pasted into a verify command stays one word and runs nothing: recorded names come from
// whoever started the container or wrote the file. A name with characters a terminal would act
// on (ESC, BEL, newlines, invisible formatting) is written in ANSI-C quotes ($'...', as bash,
// zsh and ksh read them) with those characters escaped, so that the command shows nothing raw
// and still names the container.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:/@%+=,", r))
	}) < 0 {
		return s
	}
	if events.Printable(s) == s {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return "$'" + strings.ReplaceAll(events.Printable(s), "'", `\'`) + "'"
}

func stamp(t time.Time) string { return t.UTC().Format("15:04:05") }

func (v *view) portExhaustion(s *nsState) []Finding {
	failed := map[string]int{}
	for ep, e := range s.eps {
		if e.eaddrnotavail > 0 {
			failed[endpoint(ep)] = e.eaddrnotavail
		}
	}
	total, first := s.eaddr, s.eaddrAt
	peak, havePeak := s.peak, s.hasPeak
	share := 0.0
	if havePeak {
		share = float64(peak.Used) / float64(peak.Range)
	}
	if total == 0 && share < portUseWarn {
		return nil
	}
	f := v.finding("port_exhaustion", Critical, s.netns)
	if total == 0 {
		f.Severity = Warning
	}
	dest := peak.Endpoint.String()
	if total > 0 {
		dest = topKey(failed)
		f.Summary = fmt.Sprintf("local ports exhausted: %d connect() calls failed with EADDRNOTAVAIL (to %s)", total, dest)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%d connects failed with EADDRNOTAVAIL, the first at %s; %d of them to %s", total, stamp(first), failed[dest], dest))
	} else {
		f.Summary = fmt.Sprintf("local ports nearly exhausted: %d of %d ephemeral ports held by sockets to %s", peak.Used, peak.Range, dest)
	}
	f.Numbers["eaddrnotavail"] = float64(total)
	if havePeak {
		f.Evidence = append(f.Evidence,
			fmt.Sprintf("at %s, sockets to %s held %d local ports of the ephemeral range (%d sockets in TIME_WAIT)", stamp(peak.at), peak.Endpoint, peak.Used, peak.timeWait),
			fmt.Sprintf("net.ipv4.ip_local_port_range is %d-%d: %d ports; net.ipv4.tcp_tw_reuse is %d", peak.portRange[0], peak.portRange[1], peak.Range, peak.twReuse))
		f.Numbers["peak_used"] = float64(peak.Used)
		f.Numbers["peak_time_wait"] = float64(peak.timeWait)
		f.Numbers["range_ports"] = float64(peak.Range)
		f.Numbers["tw_reuse"] = float64(peak.twReuse)
	}
	host, port := splitEndpoint(dest)
	f.Verify = v.inNetns(s.netns, fmt.Sprintf("ss -tan state time-wait dst %s dport = :%s | wc -l; sysctl net.ipv4.ip_local_port_range net.ipv4.tcp_tw_reuse", host, port))
	f.Fix = "Each (local address, local port, remote address, remote port) is unique, so with one destination the ephemeral range is the limit, and whoever closes first keeps the port in TIME_WAIT for 60 s. " +
		"Best: keep-alive connections (a pool) to " + dest + " instead of one connection per request. " +
		"Then: widen net.ipv4.ip_local_port_range (e.g. \"10240 65535\") and set net.ipv4.tcp_tw_reuse=1 (needs tcp_timestamps) in the namespace, e.g. docker run --sysctl net.ipv4.ip_local_port_range=\"10240 65535\" --sysctl net.ipv4.tcp_tw_reuse=1; settings made by hand are lost on the next deployment."
	return []Finding{f}
}

// topKey is the key with the largest count (the smallest key among equals).
func topKey(m map[string]int) string {
	best, n := "", -1
	for k, c := range m {
		if c > n || c == n && k < best {
			best, n = k, c
		}
	}
	return best
}

func (v *view) connectionLeak(s *nsState) []Finding {
	snaps := s.snapshots()
	if len(snaps) < min(leakMinSnapshots, 1+limitMinSnapshots) {
		return nil
	}
	series := map[events.Endpoint][]int{}
	for i, sn := range snaps {
		for _, ec := range sn.est {
			if series[ec.Endpoint] == nil {
				series[ec.Endpoint] = make([]int, len(snaps))
			}
			series[ec.Endpoint][i] = ec.Count
		}
	}
	var out []Finding
	dests := make([]events.Endpoint, 0, len(series))
	for d := range series {
		dests = append(dests, d)
	}
	slices.SortFunc(dests, func(a, b events.Endpoint) int { return strings.Compare(a.String(), b.String()) })
	for _, ep := range dests {
		d := endpoint(ep)
		series := series[ep]
		start := slices.IndexFunc(series, func(n int) bool { return n > 0 })
		if f, ok := v.leakAtLimit(s, ep, snaps, series, start); ok {
			out = append(out, f)
			s.atLimit[ep] = true
			continue
		}
		// From the first snapshot that had any, the count never falls and keeps growing.
		series = series[start:]
		if len(series) < leakMinSnapshots {
			continue
		}
		first, last := series[0], series[len(series)-1]
		rising := true
		for i := 1; i < len(series); i++ {
			if series[i] < series[i-1] {
				rising = false
			}
		}
		// No plateau: the last third of the snapshots still adds connections.
		tail := series[len(series)-1-len(series)/3]
		if !rising || last < leakFactor*first || last-first < leakMinGrowth || last <= tail {
			continue
		}
		f := v.finding("connection_leak", Warning, s.netns)
		from, to := snaps[len(snaps)-len(series)].snapAt, snaps[len(snaps)-1].snapAt
		opened, closed := 0, 0
		if e := s.eps[ep]; e != nil {
			opened, closed = e.opened, e.closed
		}
		f.Summary = fmt.Sprintf("connections to %s grow without plateau: %d -> %d ESTABLISHED in %s", d, first, last, to.Sub(from).Round(time.Second))
		f.Evidence = []string{
			fmt.Sprintf("ESTABLISHED connections to %s per snapshot: %s", d, joinInts(series)),
			fmt.Sprintf("in the recording, %d connections to %s were opened and %d closed", opened, d, closed),
		}
		f.Numbers["first"] = float64(first)
		f.Numbers["last"] = float64(last)
		f.Numbers["opened"] = float64(opened)
		f.Numbers["closed"] = float64(closed)
		host, port := splitEndpoint(d)
		f.Verify = v.inNetns(s.netns, fmt.Sprintf("ss -tn state established dst %s dport = :%s | tail -n +2 | wc -l  # run it twice, a minute apart", host, port))
		f.Fix = "The client opens connections to " + d + " faster than it closes them: a pool that limits only idle connections still opens without bound under load. " +
			"Cap the open connections, not only the idle ones (Go database/sql: SetMaxOpenConns; HikariCP: maximumPoolSize; node mysql: connectionLimit), and check that every connection is returned or closed."
		out = append(out, f)
	}
	return out
}

// leakAtLimit is the leak as it is met: connections to ep rose steeply, then held flat at a
// ceiling, the server's limit, while new connects to it were turned away: they failed, or the
// server accepted them and they ended right after the handshake (PostgreSQL answers "too many
// clients" and closes; MySQL "Too many connections"). series is the ESTABLISHED count in each
// snapshot, start the first that had any.
func (v *view) leakAtLimit(s *nsState, ep events.Endpoint, snaps []*cell, series []int, start int) (Finding, bool) {
	// The growth is seen from the last snapshot without any, when there is one.
	if start > 0 {
		start--
	}
	vals := series[start:]
	if len(vals) < 1+limitMinSnapshots {
		return Finding{}, false
	}
	// The ceiling is the count the second half of the snapshots holds most often (the smaller
	// among equals): a snapshot can catch a refused connection in its few milliseconds.
	seen := map[int]int{}
	ceiling := -1
	for _, n := range vals[len(vals)/2:] {
		seen[n]++
		if c := seen[n]; c > seen[ceiling] || c == seen[ceiling] && n < ceiling {
			ceiling = n
		}
	}
	slack := max(1, ceiling/10)
	reach := slices.IndexFunc(vals, func(n int) bool { return n >= ceiling })
	first := vals[0]
	if reach < 1 || len(vals)-reach < limitMinSnapshots || ceiling < leakFactor*first || ceiling-first < limitMinGrowth {
		return Finding{}, false
	}
	for i := 1; i <= reach; i++ {
		if vals[i] < vals[i-1] { // the rise never fell
			return Finding{}, false
		}
	}
	for _, n := range vals[reach:] {
		if n < ceiling-slack || n > ceiling+slack { // held flat
			return Finding{}, false
		}
	}
	e := s.eps[ep]
	if e == nil {
		return Finding{}, false
	}
	turned := e.failures + e.quick
	if turned < limitMinTurnedAway {
		return Finding{}, false
	}
	d := endpoint(ep)
	from, reached, last := snaps[len(snaps)-len(vals)].snapAt, snaps[len(snaps)-len(vals)+reach].snapAt, snaps[len(snaps)-1].snapAt
	rise := reached.Sub(from).Round(time.Second)
	f := v.finding("leak_at_limit", Critical, s.netns)
	f.Summary = fmt.Sprintf("connections to %s rose from %d to %d within %s and held there, at the server's limit: %d new connects were turned away", d, first, ceiling, rise, turned)
	held := fmt.Sprintf("held at %d", ceiling)
	if lo, hi := slices.Min(vals[reach:]), slices.Max(vals[reach:]); lo != hi {
		held = fmt.Sprintf("held between %d and %d", lo, hi)
	}
	f.Evidence = []string{
		fmt.Sprintf("ESTABLISHED connections to %s per snapshot, from the last without any: %s", d, joinInts(vals)),
		fmt.Sprintf("%d at %s, %d at %s, then %s until %s (%d snapshots)", first, stamp(from), ceiling, stamp(reached), held, stamp(last), len(vals)-reach),
		fmt.Sprintf("%d connects to %s were turned away: %d failed, %d were accepted and ended within %s of the handshake (%d closed by the server first, %d by the client)",
			turned, d, e.failures, e.quick, quickClose, e.quickByPeer, e.quick-e.quickByPeer),
		fmt.Sprintf("in the recording, %d connections to %s were opened and %d closed", e.opened, d, e.closed),
	}
	if vals[0] > 0 {
		f.Evidence[0] = fmt.Sprintf("ESTABLISHED connections to %s per snapshot: %s", d, joinInts(vals))
	}
	if c := s.clients[ep]; len(c) > 0 {
		f.Evidence = append(f.Evidence, "client side: "+ownersString(c))
	}
	if srv := v.servers[ep]; len(srv) > 0 {
		f.Evidence = append(f.Evidence, "server side: "+ownersString(srv))
	}
	f.Numbers["from"] = float64(first)
	f.Numbers["ceiling"] = float64(ceiling)
	f.Numbers["rise_seconds"] = rise.Seconds()
	f.Numbers["plateau_snapshots"] = float64(len(vals) - reach)
	f.Numbers["turned_away"] = float64(turned)
	f.Numbers["failed"] = float64(e.failures)
	f.Numbers["closed_at_once"] = float64(e.quick)
	f.Numbers["closed_by_server"] = float64(e.quickByPeer)
	f.Numbers["opened"] = float64(e.opened)
	host, port := splitEndpoint(d)
	f.Verify = v.inNetns(s.netns, fmt.Sprintf("ss -tnp state established dst %s dport = :%s | tail -n +2 | wc -l  # stays at the ceiling; the server's log names its limit (PostgreSQL: FATAL 53300, MySQL: 1040 Too many connections)", host, port))
	f.Fix = "The client holds every connection it opens to " + d + " and the server's connection limit now refuses the rest: a pool that limits only idle connections opens without bound under load. " +
		"Cap the client's open connections below the server's limit, summed over all its instances (Go database/sql: SetMaxOpenConns; HikariCP: maximumPoolSize; node mysql: connectionLimit), and check that every connection is returned or closed; " +
		"see what the server holds (PostgreSQL: SELECT usename, application_name, client_addr, state, count(*) FROM pg_stat_activity GROUP BY 1, 2, 3, 4; MySQL: SHOW PROCESSLIST). Raising the server's limit (max_connections) only moves the wall."
	return f, true
}

// ownersString names the processes holding sockets: "pgload (pid 7, 17 sockets)",
// "postgres (17 processes from pid 9, 17 sockets)".
func ownersString(owners []Owner) string {
	parts := make([]string, len(owners))
	for i, o := range owners {
		name := events.Printable(o.Comm)
		if o.Pids > 1 {
			parts[i] = fmt.Sprintf("%s (%d processes from pid %d, %d sockets)", name, o.Pids, o.Pid, o.Sockets)
		} else {
			parts[i] = fmt.Sprintf("%s (pid %d, %d sockets)", name, o.Pid, o.Sockets)
		}
	}
	return strings.Join(parts, ", ")
}

// serverRefusals: destinations whose connections the server mostly closed right after the
// handshake, a limit or a refusal on its side (unless a leak_at_limit finding explains them).
func (v *view) serverRefusals(s *nsState) []Finding {
	var out []Finding
	dests := make([]events.Endpoint, 0)
	for ep, e := range s.eps {
		if e.quickByPeer >= refusedMin && 2*e.quickByPeer > e.opened && !s.atLimit[ep] {
			dests = append(dests, ep)
		}
	}
	slices.SortFunc(dests, func(a, b events.Endpoint) int { return strings.Compare(a.String(), b.String()) })
	for _, ep := range dests {
		e, d := s.eps[ep], endpoint(ep)
		f := v.finding("server_refusal", Warning, s.netns)
		f.Summary = fmt.Sprintf("%s closed %d of %d connections within %s of the handshake: a limit or a refusal on the server's side", d, e.quickByPeer, e.opened, quickClose)
		f.Evidence = []string{fmt.Sprintf("%d connections to %s went from ESTABLISHED to CLOSE_WAIT (the server's FIN first) within %s of being established; %d connections to it were established in the recording", e.quickByPeer, d, quickClose, e.opened)}
		if c := s.clients[ep]; len(c) > 0 {
			f.Evidence = append(f.Evidence, "client side: "+ownersString(c))
		}
		if srv := v.servers[ep]; len(srv) > 0 {
			f.Evidence = append(f.Evidence, "server side: "+ownersString(srv))
		}
		f.Numbers["closed_by_server"] = float64(e.quickByPeer)
		f.Numbers["established"] = float64(e.opened)
		host, port := splitEndpoint(d)
		f.Verify = v.inNetns(s.netns, fmt.Sprintf("timeout 5 nc -v %s %s </dev/null  # prints what the server answers before it closes", host, port))
		f.Fix = "The server at " + d + " accepts connections and closes them at once: look in its log for a connection limit (PostgreSQL max_connections: too many clients; MySQL: Too many connections; a proxy's maxconn), an access rule (pg_hba.conf, tcp wrappers, an IP allow list) or a failing backend, and fix the limit or the client that holds the connections. " +
			"A server that closes after each answer by design (HTTP without keep-alive) shows the same: then keep-alive connections save a handshake per request."
		out = append(out, f)
	}
	return out
}

func joinInts(s []int) string {
	parts := make([]string, len(s))
	for i, n := range s {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, " ")
}

func splitEndpoint(ep string) (host, port string) {
	if strings.HasPrefix(ep, "[") {
		host, port, _ = strings.Cut(ep[1:], "]:")
		return host, port
	}
	host, port, _ = strings.Cut(ep, ":")
	return host, port
}

func (v *view) fdLimit(ns uint32) []Finding {
	if v.syscalls == nil {
		return nil
	}
	type proc struct {
		pid  uint32
		comm string
	}
	fails := map[proc]map[string]uint64{} // errno name -> count
	calls := map[proc]map[string]uint64{} // syscall -> count
	arch := v.f.Meta.Arch
	for _, e := range v.syscalls.Errors {
		if e.Netns != ns || e.Errno != syscall.EMFILE && e.Errno != syscall.ENFILE {
			continue
		}
		p := proc{e.Tgid, e.Comm}
		if fails[p] == nil {
			fails[p], calls[p] = map[string]uint64{}, map[string]uint64{}
		}
		fails[p][events.ErrnoName(e.Errno)] += e.Count
		calls[p][events.SyscallName(arch, e.Nr)] += e.Count
	}
	procs := make([]proc, 0, len(fails))
	for p := range fails {
		procs = append(procs, p)
	}
	slices.SortFunc(procs, func(a, b proc) int { return cmp.Compare(a.pid, b.pid) })
	var out []Finding
	for _, p := range procs {
		emfile, enfile := fails[p]["EMFILE"], fails[p]["ENFILE"]
		f := v.finding("fd_limit", Critical, ns)
		f.Numbers["emfile"] = float64(emfile)
		f.Numbers["enfile"] = float64(enfile)
		f.Numbers["pid"] = float64(p.pid)
		var parts []string
		for sc, n := range calls[p] {
			parts = append(parts, fmt.Sprintf("%s %d", sc, n))
		}
		slices.Sort(parts)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (pid %d): %d calls failed with EMFILE and %d with ENFILE (%s)", p.comm, p.pid, emfile, enfile, strings.Join(parts, ", ")))
		limit := ""
		if pr, ok := v.processes[p.pid]; ok {
			f.Numbers["nofile_soft"] = float64(pr.NofileSoft)
			f.Numbers["nofile_hard"] = float64(pr.NofileHard)
			f.Numbers["fds"] = float64(pr.Fds)
			limit = fmt.Sprintf(" with open files limited to %d", pr.NofileSoft)
			f.Evidence = append(f.Evidence, fmt.Sprintf("its RLIMIT_NOFILE is %s (soft) / %s (hard); it had %d file descriptors open when last seen", limitString(pr.NofileSoft), limitString(pr.NofileHard), pr.Fds))
		}
		if emfile > 0 {
			f.Summary = fmt.Sprintf("%s (pid %d) ran out of file descriptors%s: %d calls failed with EMFILE", p.comm, p.pid, limit, emfile)
		} else {
			f.Summary = fmt.Sprintf("the system file table is full: %s (pid %d) got ENFILE %d times", p.comm, p.pid, enfile)
		}
		f.Verify = fmt.Sprintf("grep 'open files' /proc/%d/limits; ls /proc/%d/fd | wc -l", p.pid, p.pid)
		f.Fix = "EMFILE is the process's own limit (RLIMIT_NOFILE), not the host's: a container gets the runtime's default (often 1024) whatever the host allows. " +
			"Raise it for the container: docker run --ulimit nofile=65536:65536, compose `ulimits: {nofile: {soft: 65536, hard: 65536}}`, an ECS task definition's `ulimits` (name nofile), or the runtime's default (dockerd --default-ulimit nofile=65536:65536); " +
			"and look for descriptors that are never closed. ENFILE means the host's fs.file-max is reached."
		out = append(out, f)
	}
	return out
}

func limitString(n int64) string {
	if n < 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}

func (v *view) refusals(s *nsState) []Finding {
	refused := map[string]int{}
	for ep, e := range s.eps {
		if e.refused > 0 {
			refused[endpoint(ep)] = e.refused
		}
	}
	var out []Finding
	for _, d := range sortedKeys(refused) {
		n := refused[d]
		if n < refusedMin {
			continue
		}
		f := v.finding("connect_refused", Warning, s.netns)
		f.Summary = fmt.Sprintf("%d connects to %s were refused (ECONNREFUSED)", n, d)
		f.Evidence = []string{fmt.Sprintf("%d connect() calls to %s failed with ECONNREFUSED: nothing listens there, or its accept queue overflowed with tcp_abort_on_overflow", n, d)}
		f.Numbers["refused"] = float64(n)
		_, port := splitEndpoint(d)
		f.Verify = fmt.Sprintf("ss -tln sport = :%s  # in the namespace that should serve %s", port, d)
		f.Fix = "Start (or fix the address of) the service at " + d + "; if it restarts, make clients retry with backoff and gate traffic on a readiness check."
		out = append(out, f)
	}
	return out
}

func (v *view) resets(s *nsState) []Finding {
	resets, conns := map[string]int{}, map[string]int{}
	for ep, e := range s.eps {
		if e.resets > 0 {
			resets[endpoint(ep)], conns[endpoint(ep)] = e.resets, e.established
		}
	}
	var out []Finding
	for _, d := range sortedKeys(resets) {
		n := resets[d]
		if n < resetMin || float64(n) < resetShare*float64(max(conns[d], n)) {
			continue
		}
		f := v.finding("reset_storm", Warning, s.netns)
		f.Summary = fmt.Sprintf("%d connections with %s were cut by resets", n, d)
		f.Evidence = []string{fmt.Sprintf("%d connections with %s went from ESTABLISHED or CLOSE_WAIT straight to CLOSE; %d connections with it were established in the recording", n, d, conns[d])}
		f.Numbers["resets"] = float64(n)
		f.Numbers["established"] = float64(conns[d])
		f.Verify = v.inNetns(s.netns, "nstat -az TcpEstabResets TcpOutRsts TcpExtTCPAbortOnData TcpExtTCPAbortOnClose")
		f.Fix = "A peer (or a middlebox) aborts connections: look for a process closing sockets with unread data, SO_LINGER 0, a restarting upstream, or idle timeouts shorter on one side than the other."
		out = append(out, f)
	}
	return out
}

func (v *view) retransmits(s *nsState) []Finding {
	peak, peakDest, peakAt := s.retrans, s.retransDest, s.retransAt
	if peak < retransMin {
		return nil
	}
	f := v.finding("retransmits", Warning, s.netns)
	f.Summary = fmt.Sprintf("%d connections to %s were retransmitting at once", peak, peakDest)
	f.Evidence = []string{fmt.Sprintf("at %s, %d sockets to %s had unacknowledged retransmissions", stamp(peakAt), peak, peakDest)}
	f.Numbers["sockets"] = float64(peak)
	host, port := splitEndpoint(peakDest)
	f.Verify = v.inNetns(s.netns, fmt.Sprintf("ss -tni dst %s dport = :%s | grep -o 'retrans:[0-9/]*'", host, port))
	f.Fix = "Packets to " + peakDest + " are lost or the peer stopped answering: check the path (MTU, drops, rate limits) and the peer's load; a full accept queue also drops SYNs."
	return []Finding{f}
}

func (v *view) uncleanStop(s *nsState) []Finding {
	var out []Finding
	snaps := s.snapshots()
	for _, k := range s.kills {
		c := k.c
		// Connections open just before the stop: the last snapshot before it.
		open, snapAt := 0, time.Time{}
		for _, sn := range snaps {
			if sn.snapAt.After(c.Stopped) {
				break
			}
			open = int(sn.states[events.StateEstablished] + sn.states[events.StateCloseWait])
			snapAt = sn.snapAt
		}
		// Connections that ended at the stop, each socket once: by FIN or by reset.
		fin, rst := 0, 0
		for _, reset := range k.ended {
			if reset {
				rst++
			} else {
				fin++
			}
		}
		if open == 0 && fin+rst == 0 {
			continue
		}
		f := v.finding("unclean_stop", Warning, s.netns)
		if c.K8sPod == "" {
			f.Container = c.Name // a pod's finding stays the pod's; its summary names the container
		}
		f.Summary = fmt.Sprintf("%s was killed at %s with %d connections open: it did not shut down on SIGTERM", c.Name, stamp(c.Stopped), open)
		f.Evidence = []string{
			fmt.Sprintf("it stopped at %s with exit code %d: SIGKILL, sent when the stop timeout passed without the container exiting on SIGTERM", stamp(c.Stopped), c.ExitCode),
		}
		if !snapAt.IsZero() {
			f.Evidence = append(f.Evidence, fmt.Sprintf("the last snapshot before the stop (%s) had %d connections ESTABLISHED or CLOSE_WAIT", stamp(snapAt), open))
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("within %s of the stop, %d connections ended: %d closed by the kernel with FIN, %d reset", stopWindow, fin+rst, fin, rst))
		f.Numbers["exit_code"] = float64(c.ExitCode)
		f.Numbers["open_connections"] = float64(open)
		f.Numbers["closed_at_stop"] = float64(fin + rst)
		f.Numbers["reset_at_stop"] = float64(rst)
		f.Verify = fmt.Sprintf("docker inspect -f '{{.State.ExitCode}} {{.Config.StopSignal}}' %s; docker events --since 1h --filter %s --filter event=kill", shellQuote(c.Name), shellQuote("container="+c.Name))
		f.Fix = "Handle SIGTERM: stop accepting, finish in-flight requests, then close the HTTP server, database pools and websockets before exiting, within the stop timeout. " +
			"A shell as PID 1 (the shell form of CMD) does not pass SIGTERM on and PID 1 ignores it by default: use the exec form, exec the server, or run with --init; raise the timeout with docker stop -t or stop_grace_period if draining takes longer."
		out = append(out, f)
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
