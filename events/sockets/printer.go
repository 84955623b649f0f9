// Package sockets is the codec of the socket iterator's records (bpf/sockets.h): it decodes the
// socket and owner records of a snapshot, sums a namespace up (Summarize), and prints snapshots as
// `sockscope sockets` shows them, live or replayed: a table like ss, JSON lines, or per namespace
// a summary.
package sockets

import (
	"encoding/json"
	"io"
	"slices"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
)

// Options say what a Printer prints.
type Options struct {
	State   events.State // only sockets in this state; 0: all
	Ports   []int        // only sockets with one of these ports, local or remote; none: all
	Summary bool         // per namespace, a summary (ss -s, with who holds TIME_WAIT and the ports)
	Top     int          // remotes in a summary's lists
	JSON    bool         // JSON lines instead of a table
}

// Printer writes the sockets (or their summary) of one namespace after another.
type Printer struct {
	o   Options
	w   io.Writer
	out []byte
}

// NewPrinter prints to w; a table's header is gathered at once, and written with the first
// Flush.
func NewPrinter(o Options, w io.Writer) *Printer {
	p := &Printer{o: o, w: w}
	if !o.JSON && !o.Summary {
		p.out = AppendSocketHeader(p.out)
	}
	return p
}

// Print writes the sockets of the namespace tg, whose local port range and tcp_tw_reuse are
// given for its summary.
func (p *Printer) Print(tg containers.Target, socks []Socket, portRange [2]int, twReuse int) error {
	o := p.o
	socks = slices.DeleteFunc(socks, func(k Socket) bool {
		if o.State != 0 && k.State != o.State {
			return true
		}
		return len(o.Ports) > 0 && !slices.Contains(o.Ports, int(k.Sport)) && !slices.Contains(o.Ports, int(k.Dport))
	})
	if o.Summary {
		s := Summarize(socks, portRange, twReuse, o.Top)
		if o.JSON {
			p.out = appendSummaryJSON(p.out, &s, tg)
		} else {
			p.out = AppendSummary(p.out, &s, tg.Display(), tg.Inode)
		}
		return nil
	}
	for i := range socks {
		if o.JSON {
			p.out = AppendSocketJSON(p.out, &socks[i], tg.Name)
		} else {
			p.out = AppendSocketRow(p.out, &socks[i], tg.Display())
		}
		if len(p.out) >= 256<<10 {
			if err := events.WriteAll(p.w, p.out); err != nil {
				return err
			}
			p.out = p.out[:0]
		}
	}
	return nil
}

// Flush writes what is gathered.
func (p *Printer) Flush() error {
	err := events.WriteAll(p.w, p.out)
	p.out = p.out[:0]
	return err
}

func appendSummaryJSON(b []byte, s *Summary, tg containers.Target) []byte {
	type ep struct {
		Endpoint string `json:"endpoint"`
		Count    int    `json:"count"`
	}
	type use struct {
		Endpoint string `json:"endpoint"`
		Used     int    `json:"used"`
		Range    int    `json:"range"`
	}
	eps := func(in []events.EndpointCount) []ep {
		out := []ep{}
		for _, e := range in {
			out = append(out, ep{e.Endpoint.String(), e.Count})
		}
		return out
	}
	states := map[string]int{}
	for st, n := range s.ByState {
		states[st.String()] = n
	}
	uses := []use{}
	for _, u := range s.PortUse {
		uses = append(uses, use{u.Endpoint.String(), u.Used, u.Range})
	}
	v := struct {
		Container   string         `json:"container"`
		ContainerID string         `json:"container_id"`
		K8sNs       string         `json:"k8s_namespace"`
		K8sPod      string         `json:"k8s_pod"`
		Netns       uint32         `json:"netns"`
		Total       int            `json:"total"`
		States      map[string]int `json:"states"`
		PortRange   [2]int         `json:"ip_local_port_range"`
		TWReuse     int            `json:"tcp_tw_reuse"`
		TimeWait    []ep           `json:"time_wait_by_remote"`
		Established []ep           `json:"established_by_remote"`
		PortUse     []use          `json:"ephemeral_ports_by_remote"`
	}{tg.Name.Name, tg.Name.ID, tg.Name.Namespace, tg.Name.Pod, tg.Inode, s.Total, states, s.PortRange, s.TWReuse, eps(s.TimeWait), eps(s.Established), uses}
	j, _ := json.Marshal(v)
	return append(append(b, j...), '\n')
}
