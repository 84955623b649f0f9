package exporter

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sockscope/sockscope/loader/counters"
)

// fixture is the exporter's kernel side as a table: counters, a namespace's sample, and the
// parts that fail.
type fixture struct {
	counters              []counters.Counter
	sample                counters.NetnsSample
	countersErr, statsErr error
}

func (f *fixture) SetNetns([]uint32) error { return nil }
func (f *fixture) Counters(out []counters.Counter) ([]counters.Counter, error) {
	if f.countersErr != nil {
		return out, f.countersErr
	}
	return append(out, f.counters...), nil
}
func (f *fixture) Requests() (map[uint32]uint32, error)              { return map[uint32]uint32{}, nil }
func (f *fixture) Moves(uint32) (counters.Moves, error)              { return counters.Moves{}, nil }
func (f *fixture) Sample(string, bool) (counters.NetnsSample, error) { return f.sample, nil }
func (f *fixture) Stats() ([]counters.ProgramStats, error) {
	if f.statsErr != nil {
		return nil, f.statsErr
	}
	return []counters.ProgramStats{{Name: "count_state", Runs: 10, RunTime: time.Microsecond}}, nil
}
func (f *fixture) Lost() (counters.Lost, error)           { return counters.Lost{}, nil }
func (f *fixture) Usage(int) ([]counters.MapUsage, error) { return nil, nil }

// scrapeFixture registers a collector over f counting one namespace, "web" (inode 10), and
// gathers it as Prometheus would: every series as "name{labels} value", and the warnings given.
func scrapeFixture(t *testing.T, f *fixture) (map[string]float64, []string) {
	t.Helper()
	c := New(Kernel{Counters: f, MaxNetns: 4}, "test", false)
	var warned []string
	c.Warn = func(s string) { warned = append(warned, s) }
	web := ns(10, "web", false)
	web.Path = "/proc/1/ns/net"
	counted, _, _ := c.planLocked([]Namespace{web})
	c.ns = counted
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("the scrape failed as a whole: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var l []string
			for _, p := range m.GetLabel() {
				if p.GetValue() != "" {
					l = append(l, p.GetName()+"="+p.GetValue())
				}
			}
			out[mf.GetName()+"{"+strings.Join(l, ",")+"}"] = value(m)
		}
	}
	return out, warned
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

// The connection counters of the kernel, as the collector exposes them: one fixture, every
// series exact.
func TestConnectionCountersFromAFixture(t *testing.T) {
	const web = 10
	f := &fixture{counters: []counters.Counter{
		{Netns: web, Kind: counters.KindTransition, Arg: 7<<8 | 2, Value: 5}, // CLOSE -> SYN_SENT
		{Netns: web, Kind: counters.KindTransition, Arg: 2<<8 | 1, Value: 4}, // SYN_SENT -> ESTABLISHED
		{Netns: web, Kind: counters.KindConnect, Arg: 0, Value: 4},
		{Netns: web, Kind: counters.KindConnect, Arg: uint16(syscall.ECONNREFUSED), Value: 1},
		{Netns: web, Kind: counters.KindDuration, Arg: 0, Value: 3},
		{Netns: web, Kind: counters.KindDuration, Arg: 2, Value: 1},
		{Netns: web, Kind: counters.KindDurationSum, Value: 90_000},
		{Netns: web, Kind: counters.KindRetransmit, Value: 2},
		{Netns: 99, Kind: counters.KindRetransmit, Value: 7}, // a namespace no longer counted
	}, sample: counters.NetnsSample{PortRange: [2]int{32768, 60999}, TWReuse: 2, TimeWait: 0}}
	got, warned := scrapeFixture(t, f)
	want := map[string]float64{
		"sockscope_tcp_state_transitions_total{container=web,from=CLOSE,to=SYN_SENT}":       5,
		"sockscope_tcp_state_transitions_total{container=web,from=SYN_SENT,to=ESTABLISHED}": 4,
		"sockscope_tcp_connects_total{container=web,result=success}":                        4,
		"sockscope_tcp_connects_total{container=web,result=ECONNREFUSED}":                   1,
		"sockscope_tcp_connects_total{container=web,result=ETIMEDOUT}":                      0, // present from the start
		"sockscope_tcp_connect_duration_seconds{container=web}":                             4,
		"sockscope_tcp_retransmits_total{container=web}":                                    2,
		"sockscope_tcp_resets_sent_total{container=web}":                                    0,
		"sockscope_tcp_ephemeral_ports{container=web}":                                      28232,
		"sockscope_tcp_tw_reuse{container=web}":                                             2,
		"sockscope_scrape_collector_success{collector=connections}":                         1,
		"sockscope_scrape_collector_success{collector=sockets}":                             1,
		"sockscope_scrape_collector_success{collector=programs}":                            1,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if strings.Contains(k, "retransmits") && !strings.Contains(k, "container=web") {
			t.Errorf("a namespace that is not counted is exposed: %s", k)
		}
	}
	if len(warned) != 0 {
		t.Errorf("warnings: %q", warned)
	}
}

// A part that fails does not blank the scrape (node_exporter's per-collector success): its own
// metrics are left out and its success is 0, the other parts' metrics are all there, the scrape
// answers, and the failure is said once a minute at most.
func TestAFailingPartLeavesTheOthersInTheScrape(t *testing.T) {
	const web = 10
	counters := []counters.Counter{{Netns: web, Kind: counters.KindConnect, Arg: 0, Value: 4}}
	for _, tc := range []struct {
		name        string
		f           *fixture
		failed      []string
		gone, there []string
	}{
		{"the counters cannot be read", &fixture{counters: counters, countersErr: errors.New("EPERM")},
			[]string{"connections", "sockets"}, // the gauges are kept from the counters' moves
			[]string{"sockscope_tcp_connects_total{", "sockscope_tcp_sockets{"},
			[]string{"sockscope_container_info{", "sockscope_bpf_program_runs_total{program=count_state}", "sockscope_namespaces{}"}},
		{"the programs' statistics cannot be read", &fixture{counters: counters, statsErr: errors.New("EBADF")},
			[]string{"programs"},
			[]string{"sockscope_bpf_program_runs_total{"},
			[]string{"sockscope_tcp_connects_total{container=web,result=success}", "sockscope_tcp_sockets{container=web,state=LISTEN}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, warned := scrapeFixture(t, tc.f)
			for _, part := range []string{"connections", "sockets", "programs"} {
				want := 1.0
				if slices.Contains(tc.failed, part) {
					want = 0
				}
				if v := got[fmt.Sprintf("sockscope_scrape_collector_success{collector=%s}", part)]; v != want {
					t.Errorf("success of %s = %v, want %v", part, v, want)
				}
			}
			has := func(prefix string) bool {
				for k := range got {
					if strings.HasPrefix(k, prefix) {
						return true
					}
				}
				return false
			}
			for _, p := range tc.gone {
				if has(p) {
					t.Errorf("%s* is exposed though its part failed", p)
				}
			}
			for _, p := range tc.there {
				if !has(p) {
					t.Errorf("%s* is missing: another part's failure took it", p)
				}
			}
			if len(warned) != len(tc.failed) {
				t.Errorf("%d warnings for %d failed parts: %q", len(warned), len(tc.failed), warned)
			}
			if got["sockscope_scrape_errors_total{}"] != float64(len(tc.failed)) {
				t.Errorf("sockscope_scrape_errors_total = %v, want %d", got["sockscope_scrape_errors_total{}"], len(tc.failed))
			}
		})
	}
}
