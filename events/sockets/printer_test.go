package sockets

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
)

// The nginx -> upstream incident as `sockscope sockets --summary -o json` shows it: the TIME_WAIT
// sockets that hold the narrow port range, counted by the upstream that holds them.
func TestSummaryCountsTimeWaitByRemote(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	var socks []Socket
	for i := range 4 {
		socks = append(socks, Socket{State: events.StateTimeWait, Family: 2, Saddr: lo, Sport: uint16(61000 + i), Daddr: lo, Dport: 8080})
	}
	socks = append(socks, Socket{State: events.StateListen, Family: 2, Saddr: lo, Sport: 8080})
	var out bytes.Buffer
	p := NewPrinter(Options{Summary: true, Top: 5, JSON: true}, &out)
	tg := containers.Target{Name: containers.Name{Name: "nginx", ID: "abc"}, Inode: 4026532001}
	if err := p.Print(tg, socks, [2]int{61000, 61003}, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Container string         `json:"container"`
		Netns     uint32         `json:"netns"`
		Total     int            `json:"total"`
		States    map[string]int `json:"states"`
		TimeWait  []struct {
			Endpoint string `json:"endpoint"`
			Count    int    `json:"count"`
		} `json:"time_wait_by_remote"`
		PortUse []struct {
			Endpoint string `json:"endpoint"`
			Used     int    `json:"used"`
			Range    int    `json:"range"`
		} `json:"ephemeral_ports_by_remote"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got.Container != "nginx" || got.Netns != 4026532001 || got.Total != 5 || got.States["TIME_WAIT"] != 4 || got.States["LISTEN"] != 1 {
		t.Errorf("summary: %s", out.String())
	}
	if len(got.TimeWait) != 1 || got.TimeWait[0].Endpoint != "127.0.0.1:8080" || got.TimeWait[0].Count != 4 {
		t.Errorf("time_wait_by_remote: %+v", got.TimeWait)
	}
	if len(got.PortUse) != 1 || got.PortUse[0].Used != 4 || got.PortUse[0].Range != 4 {
		t.Errorf("ephemeral_ports_by_remote: %+v", got.PortUse)
	}
}

// --state and --port keep only their sockets, in the table under one header.
func TestFiltersKeepOnlyTheirSockets(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	socks := []Socket{
		{State: events.StateEstablished, Family: 2, Saddr: lo, Sport: 40000, Daddr: lo, Dport: 8080},
		{State: events.StateEstablished, Family: 2, Saddr: lo, Sport: 8080, Daddr: lo, Dport: 40000},
		{State: events.StateEstablished, Family: 2, Saddr: lo, Sport: 40001, Daddr: lo, Dport: 5432},
		{State: events.StateListen, Family: 2, Saddr: lo, Sport: 8080},
	}
	var out bytes.Buffer
	p := NewPrinter(Options{State: events.StateEstablished, Ports: []int{8080}}, &out)
	if err := p.Print(containers.Target{Name: containers.Name{Name: "web"}}, socks, [2]int{}, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 || strings.Contains(out.String(), "5432") || strings.Contains(out.String(), "LISTEN") {
		t.Errorf("want the header and the two established sockets of port 8080:\n%s", out.String())
	}
}
