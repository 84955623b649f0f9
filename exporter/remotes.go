package exporter

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/events/sockets"
	ksockets "github.com/sockscope/sockscope/loader/sockets"
)

var descRemotes = prometheus.NewDesc("sockscope_tcp_remote_sockets",
	"With --top-remotes K: TCP sockets by remote endpoint (address:port) and state, for the K endpoints with the most sockets per container; the rest add up in remote=\"other\". Listening sockets are left out.",
	nsLabelNames("remote", "state"), nil)

// remoteCounts walks the namespace's sockets record by record (instead of counting in the
// kernel) and returns the per-state counts and the sockets per remote endpoint and state.
func remoteCounts(snap ksockets.Snapshot) (states [16]uint32, byRemote map[netip.AddrPort]*[16]uint32, err error) {
	socks, err := sockets.DecodeSockets(snap.Records, 0, nil)
	if err != nil {
		return states, nil, err
	}
	byRemote = map[netip.AddrPort]*[16]uint32{}
	for _, s := range socks {
		states[s.State&15]++
		if s.State == events.State(10) { // LISTEN: no remote end
			continue
		}
		ap := netip.AddrPortFrom(s.Daddr.Unmap(), s.Dport)
		c := byRemote[ap]
		if c == nil {
			c = new([16]uint32)
			byRemote[ap] = c
		}
		c[s.State&15]++
	}
	return states, byRemote, nil
}

// topRemotes sends the K endpoints with the most sockets (ties by address) and "other". These
// are gauges, so the set may change from one scrape to the next.
func topRemotes(ch chan<- prometheus.Metric, ns Namespace, byRemote map[netip.AddrPort]*[16]uint32, k int) {
	type ranked struct {
		ap    netip.AddrPort
		total uint32
	}
	all := make([]ranked, 0, len(byRemote))
	for ap, c := range byRemote {
		var t uint32
		for _, n := range c {
			t += n
		}
		all = append(all, ranked{ap, t})
	}
	slices.SortFunc(all, func(a, b ranked) int {
		if c := cmp.Compare(b.total, a.total); c != 0 {
			return c
		}
		return a.ap.Compare(b.ap)
	})
	var other [16]uint32
	for i, r := range all {
		c := byRemote[r.ap]
		if i >= k {
			for st, n := range c {
				other[st] += n
			}
			continue
		}
		for st, n := range c {
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(descRemotes, prometheus.GaugeValue, float64(n), ns.labels(r.ap.String(), events.State(st).String())...)
			}
		}
	}
	for st, n := range other {
		if n > 0 {
			ch <- prometheus.MustNewConstMetric(descRemotes, prometheus.GaugeValue, float64(n), ns.labels("other", events.State(st).String())...)
		}
	}
}
