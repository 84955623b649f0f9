// Package syscalls prints the syscall counts of loader/syscalls as `sockscope syscalls` shows
// them: grouped by container, command, process and syscall, as tables or JSON lines, each print
// holding what was counted since the previous one. Live counts and a recording's replay print
// through the same Table.
package syscalls

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	ksyscalls "github.com/sockscope/sockscope/loader/syscalls"
)

// ByFields are the fields counts can be grouped by, in the order of the columns.
var ByFields = []string{"container", "comm", "pid", "syscall"}

// Options say what a Table prints.
type Options struct {
	By       []string      // a subset of ByFields
	Syscalls []string      // only these syscalls, by name; none: all
	Comms    []string      // only these commands; none: all
	Errors   bool          // also the failures by errno
	Latency  bool          // the average and maximum latency of the calls
	Paths    bool          // also the paths the calls were given
	Top      int           // at most this many rows per table
	Interval time.Duration // > 0: each table print starts with its time of day
	JSON     bool          // JSON lines instead of tables
}

// Table prints what was counted since its last print.
type Table struct {
	o     Options
	names containers.Namer
	w     io.Writer
	prev  *ksyscalls.Snapshot
	drops ksyscalls.Drops
}

// NewTable prints to w, naming namespaces with names.
func NewTable(o Options, names containers.Namer, w io.Writer) *Table {
	return &Table{o: o, names: names, w: w}
}

type sysRow struct {
	container, id, comm, syscall, errno, path string
	k8sNamespace, k8sPod                      string
	netns, pid                                uint32
	count, errors                             uint64
	latTotal, latMax                          time.Duration
}

func (p *Table) group(k ksyscalls.Key) sysRow {
	r := sysRow{}
	by := p.o.By
	if slices.Contains(by, "container") {
		n, ok := p.names.Lookup(k.Netns)
		if !ok {
			n.Name = strconv.FormatUint(uint64(k.Netns), 10)
		}
		r.container, r.id, r.netns, r.k8sNamespace, r.k8sPod = n.Name, n.ID, k.Netns, n.Namespace, n.Pod
	}
	if slices.Contains(by, "comm") {
		r.comm = k.Comm
	}
	if slices.Contains(by, "pid") {
		r.pid = k.Tgid
	}
	if slices.Contains(by, "syscall") {
		r.syscall = events.SyscallName(runtime.GOARCH, k.Nr)
	}
	return r
}

func (p *Table) wanted(k ksyscalls.Key) bool {
	if len(p.o.Comms) > 0 && !slices.Contains(p.o.Comms, k.Comm) {
		return false
	}
	if len(p.o.Syscalls) == 0 {
		return true
	}
	return slices.Contains(p.o.Syscalls, events.SyscallName(runtime.GOARCH, k.Nr))
}

// Print writes what cur counted since the previous Print (since the start, the first time); at
// is when cur was read. Counts that did not fit the kernel's tables are warned about on warn.
func (p *Table) Print(cur ksyscalls.Snapshot, at time.Time, warn io.Writer) error {
	for _, d := range []struct {
		now, before uint64
		what        string
	}{
		{cur.Dropped.CountsFull, p.drops.CountsFull, "processes' syscalls"},
		{cur.Dropped.ErrorsFull, p.drops.ErrorsFull, "errno counts"},
		{cur.Dropped.PathsFull, p.drops.PathsFull, "paths"},
	} {
		if d.now > d.before {
			fmt.Fprintf(warn, "sockscope: warning: %d %s did not fit the kernel's table and were not counted\n", d.now-d.before, d.what)
		}
	}
	p.drops = cur.Dropped
	prevCount := map[ksyscalls.Key]ksyscalls.Count{}
	prevErr := map[errKeyT]uint64{}
	prevPath := map[pathKeyT]uint64{}
	if p.prev != nil {
		for _, c := range p.prev.Counts {
			prevCount[c.Key] = c
		}
		for _, e := range p.prev.Errors {
			prevErr[errKey(e)] = e.Count
		}
		for _, pc := range p.prev.Paths {
			prevPath[pathKey(pc)] = pc.Count
		}
	}
	p.prev = &cur

	counts := map[sysRow]*sysRow{}
	for _, c := range cur.Counts {
		if !p.wanted(c.Key) {
			continue
		}
		pc := prevCount[c.Key]
		if c.Count-pc.Count == 0 {
			continue
		}
		r := rowOf(counts, p.group(c.Key))
		r.count += c.Count - pc.Count
		r.errors += c.Errors - pc.Errors
		r.latTotal += c.LatTotal - pc.LatTotal
		r.latMax = max(r.latMax, c.LatMax)
	}
	errs := map[sysRow]*sysRow{}
	if p.o.Errors {
		for _, e := range cur.Errors {
			if !p.wanted(e.Key) || e.Count-prevErr[errKey(e)] == 0 {
				continue
			}
			g := p.group(e.Key)
			g.errno = events.ErrnoName(e.Errno)
			rowOf(errs, g).count += e.Count - prevErr[errKey(e)]
		}
	}
	paths := map[sysRow]*sysRow{}
	if p.o.Paths {
		for _, pc := range cur.Paths {
			if !p.wanted(pc.Key) || pc.Count-prevPath[pathKey(pc)] == 0 {
				continue
			}
			g := p.group(pc.Key)
			g.path = pc.Path
			rowOf(paths, g).count += pc.Count - prevPath[pathKey(pc)]
		}
	}
	var out strings.Builder
	if p.o.JSON {
		for _, t := range []struct {
			typ  string
			rows map[sysRow]*sysRow
		}{{"syscall", counts}, {"error", errs}, {"path", paths}} {
			for _, r := range topRows(t.rows, p.o.Top) {
				p.appendJSON(&out, t.typ, r)
			}
		}
	} else {
		p.appendTables(&out, at, counts, errs, paths)
	}
	return events.WriteAll(p.w, []byte(out.String()))
}

// rowOf returns the row of group g in m, adding it with zero counts.
func rowOf(m map[sysRow]*sysRow, g sysRow) *sysRow {
	r := m[g]
	if r == nil {
		r = &g
		m[g] = r
	}
	return r
}

type errKeyT struct {
	ksyscalls.Key
	errno syscall.Errno
}

func errKey(e ksyscalls.Errors) errKeyT { return errKeyT{e.Key, e.Errno} }

type pathKeyT struct {
	ksyscalls.Key
	path string
}

func pathKey(p ksyscalls.PathCount) pathKeyT { return pathKeyT{p.Key, p.Path} }

func topRows(m map[sysRow]*sysRow, n int) []*sysRow {
	rows := make([]*sysRow, 0, len(m))
	for _, r := range m {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b *sysRow) int {
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.container, b.container), cmp.Compare(a.comm, b.comm), cmp.Compare(a.pid, b.pid),
			cmp.Compare(a.syscall, b.syscall), cmp.Compare(a.errno, b.errno), cmp.Compare(a.path, b.path))
	})
	return rows[:min(n, len(rows))]
}

func (p *Table) appendJSON(out *strings.Builder, typ string, r *sysRow) {
	v := map[string]any{"type": typ, "count": r.count}
	if slices.Contains(p.o.By, "container") {
		v["container"], v["container_id"], v["netns"] = r.container, r.id, r.netns
		v["k8s_namespace"], v["k8s_pod"] = r.k8sNamespace, r.k8sPod
	}
	if slices.Contains(p.o.By, "comm") {
		v["comm"] = r.comm
	}
	if slices.Contains(p.o.By, "pid") {
		v["pid"] = r.pid
	}
	if slices.Contains(p.o.By, "syscall") {
		v["syscall"] = r.syscall
	}
	switch typ {
	case "syscall":
		v["errors"] = r.errors
		if p.o.Latency {
			v["latency_avg_us"] = float64(r.latTotal.Microseconds()) / float64(max(r.count, 1))
			v["latency_max_us"] = r.latMax.Microseconds()
		}
	case "error":
		v["errno"] = r.errno
	case "path":
		v["path"] = r.path
	}
	b, _ := json.Marshal(v)
	out.Write(b)
	out.WriteByte('\n')
}

func (p *Table) appendTables(out *strings.Builder, at time.Time, counts, errs, paths map[sysRow]*sysRow) {
	head := func(tw *tabwriter.Writer, extra ...string) {
		var cols []string
		for _, b := range ByFields {
			if slices.Contains(p.o.By, b) {
				cols = append(cols, strings.ToUpper(b))
			}
		}
		fmt.Fprintln(tw, strings.Join(append(cols, extra...), "\t"))
	}
	cells := func(r *sysRow) []string {
		var c []string
		for _, b := range ByFields {
			if !slices.Contains(p.o.By, b) {
				continue
			}
			switch b {
			case "container":
				c = append(c, events.Printable(r.container))
			case "comm":
				c = append(c, events.Printable(r.comm))
			case "pid":
				c = append(c, strconv.FormatUint(uint64(r.pid), 10))
			case "syscall":
				c = append(c, r.syscall)
			}
		}
		return c
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	if p.o.Interval > 0 {
		fmt.Fprintf(out, "%s\n", at.Local().Format("15:04:05"))
	}
	extra := []string{"COUNT", "ERRORS"}
	if p.o.Latency {
		extra = append(extra, "AVG_US", "MAX_US")
	}
	head(tw, extra...)
	for _, r := range topRows(counts, p.o.Top) {
		c := append(cells(r), strconv.FormatUint(r.count, 10), strconv.FormatUint(r.errors, 10))
		if p.o.Latency {
			c = append(c, strconv.FormatFloat(float64(r.latTotal.Nanoseconds())/1000/float64(max(r.count, 1)), 'f', 1, 64),
				strconv.FormatInt(r.latMax.Microseconds(), 10))
		}
		fmt.Fprintln(tw, strings.Join(c, "\t"))
	}
	tw.Flush()
	if p.o.Errors {
		out.WriteString("\nfailures:\n")
		tw = tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
		head(tw, "ERRNO", "COUNT")
		for _, r := range topRows(errs, p.o.Top) {
			fmt.Fprintln(tw, strings.Join(append(cells(r), r.errno, strconv.FormatUint(r.count, 10)), "\t"))
		}
		tw.Flush()
	}
	if p.o.Paths {
		out.WriteString("\npaths:\n")
		tw = tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
		head(tw, "COUNT", "PATH")
		for _, r := range topRows(paths, p.o.Top) {
			fmt.Fprintln(tw, strings.Join(append(cells(r), strconv.FormatUint(r.count, 10), events.Printable(r.path)), "\t"))
		}
		tw.Flush()
	}
}
