package diagnose

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WriteHTML writes r as one self-contained HTML page: no scripts or styles or fonts or images
// loaded from anywhere (no http:// or https:// URL at all in the output, no <script src>, no
// <link>), so it can be opened offline and mailed around. The stylesheet is inline and the charts
// are inline SVG drawn here; no JavaScript is needed to read it, hovering a chart's point shows
// its exact number. Every string taken from the report is escaped by html/template.
//
// The page is rendered in memory first, so a template error never leaves half a page behind.
func WriteHTML(w io.Writer, r *Report) error {
	if r == nil {
		return errors.New("diagnose: no report to write")
	}
	var buf bytes.Buffer
	if err := htmlPage.Execute(&buf, newHTMLReport(r)); err != nil {
		return fmt.Errorf("diagnose: render HTML: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// htmlReport is what the page template reads: the report with its times formatted, its maps
// flattened in a stable order and its charts drawn.
type htmlReport struct {
	Source, Hostname, Kernel string
	Start, End, Interval     string
	Lost                     uint64
	Notes                    []string
	Findings                 []Finding
	Targets                  []htmlTarget
}

// htmlTarget is one namespace's section.
type htmlTarget struct {
	Anchor   string // the section's id, for the contents links
	Name     string
	ID       string
	Image    string
	Netns    uint32
	Started  string
	Stopped  string
	ExitCode int // when Stopped is not ""
	Facts    string
	Charts   []htmlChart

	Timeline   []htmlStep
	TopRemotes []RemoteCount
	Syscalls   []SyscallCount
	Errors     []SyscallErrors
	Stacks     []StackCount
	Flame      template.HTML // built from counts and escaped names only, see flameSVG
}

// htmlChart is a drawn chart and its caption.
type htmlChart struct {
	Caption string
	SVG     template.HTML // built from numbers and escaped labels only, see svgChart
}

// htmlStep is one row of a timeline table.
type htmlStep struct {
	Start       string
	Connects    int
	Failures    string // "EADDRNOTAVAIL 3, ECONNREFUSED 1"
	Resets      int
	Established string // "" without a snapshot in the step
	TimeWait    string
}

func newHTMLReport(r *Report) htmlReport {
	v := htmlReport{
		Source:   r.Source,
		Hostname: r.Hostname,
		Kernel:   r.Kernel,
		Start:    htmlTime(r.Start),
		End:      htmlTime(r.End),
		Lost:     r.Lost,
		Notes:    r.Notes,
		Findings: r.Findings,
	}
	if r.Interval > 0 {
		v.Interval = r.Interval.String()
	}
	for i := range r.Targets {
		v.Targets = append(v.Targets, newHTMLTarget(&r.Targets[i], i))
	}
	return v
}

func newHTMLTarget(t *Target, i int) htmlTarget {
	v := htmlTarget{
		Anchor:     "target-" + strconv.Itoa(i),
		Name:       t.Name,
		ID:         t.ID,
		Image:      t.Image,
		Netns:      t.Netns,
		Started:    "before the recording",
		ExitCode:   t.ExitCode,
		Facts:      htmlFacts(t.Facts),
		TopRemotes: t.TopRemotes,
		Syscalls:   t.Syscalls,
		Errors:     t.Errors,
		Stacks:     t.Stacks,
		Flame:      flameSVG(t.Stacks),
	}
	if !t.Started.IsZero() {
		v.Started = htmlTime(t.Started)
	}
	if !t.Stopped.IsZero() {
		v.Stopped = htmlTime(t.Stopped)
	}

	// The charts share the x axis: every step's start, snapshot or not.
	times := make([]time.Time, len(t.Timeline))
	connects := chartSeries{name: "connects", color: "#1f77b4"}
	failures := chartSeries{name: "failures", color: "#d62728"}
	established := chartSeries{name: "ESTABLISHED", color: "#2ca02c"}
	timeWait := chartSeries{name: "TIME_WAIT", color: "#ff7f0e"}
	resets := chartSeries{name: "resets", color: "#9467bd"}
	for i, s := range t.Timeline {
		times[i] = s.Start
		failed := 0
		for _, n := range s.Failures {
			failed += n
		}
		connects.add(s.Start, s.Connects)
		failures.add(s.Start, failed)
		resets.add(s.Start, s.Resets)
		row := htmlStep{
			Start:    htmlClock(s.Start),
			Connects: s.Connects,
			Failures: htmlFailures(s.Failures),
			Resets:   s.Resets,
		}
		if s.HasSnapshot {
			established.add(s.Start, s.States["ESTABLISHED"])
			timeWait.add(s.Start, s.States["TIME_WAIT"])
			row.Established = strconv.Itoa(s.States["ESTABLISHED"])
			row.TimeWait = strconv.Itoa(s.States["TIME_WAIT"])
		}
		v.Timeline = append(v.Timeline, row)
	}
	v.Charts = []htmlChart{
		{"Connects and failed connects per step", svgChart("connects and failures", times, connects, failures)},
		{"Sockets at the end of each step", svgChart("sockets by state", times, established, timeWait)},
		{"Resets per step", svgChart("resets", times, resets)},
	}
	return v
}

// htmlTime formats t as RFC 3339 in UTC, "" when unset.
func htmlTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// htmlClock formats t as the time of day in UTC, the label of a chart tick and a timeline row.
func htmlClock(t time.Time) string { return t.UTC().Format(time.TimeOnly) }

// htmlFacts lists a namespace's settings; all zero means they could not be read.
func htmlFacts(f NetnsFacts) string {
	if f == (NetnsFacts{}) {
		return "not read"
	}
	return fmt.Sprintf("ip_local_port_range %d–%d, tcp_tw_reuse %d, somaxconn %d",
		f.PortRange[0], f.PortRange[1], f.TWReuse, f.Somaxconn)
}

// htmlFailures lists failures by errno, most first, then by name: "EADDRNOTAVAIL 3, ECONNREFUSED 1".
func htmlFailures(m map[string]int) string {
	names := make([]string, 0, len(m))
	for name, n := range m {
		if n != 0 {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	for i, name := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(name)
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(m[name]))
	}
	return b.String()
}

// Chart geometry in SVG user units; the chart scales to the page's width.
const (
	chartW      = 720
	chartH      = 210
	chartLeft   = 52 // room for the count labels
	chartRight  = 40 // room for half of the last time label
	chartTop    = 30 // room for the legend
	chartBottom = 26 // room for the time labels
	chartXTicks = 5  // time labels at most
)

// chartSeries is one line of a chart.
type chartSeries struct {
	name   string // a fixed label chosen here, escaped anyway
	color  string // a CSS colour literal, never from the report
	points []chartPoint
}

type chartPoint struct {
	t time.Time
	v int
}

func (s *chartSeries) add(t time.Time, v int) { s.points = append(s.points, chartPoint{t, v}) }

// svgChart draws series as lines over times, the starts of all the steps (the x axis), with
// count and time ticks, a legend, and a point per value whose <title> shows its exact number.
// Without any point it draws the empty frame with "no data"; all-zero data is a flat line.
// A single step sits in the middle. The SVG carries no xmlns: inline SVG in HTML5 needs none.
//
// Only numbers and html.EscapeString'd labels go into the markup, which is why it can be handed
// to the template as template.HTML.
func svgChart(title string, times []time.Time, series ...chartSeries) template.HTML {
	var b strings.Builder
	const (
		x0, x1 = chartLeft, chartW - chartRight // plot area
		y0, y1 = chartH - chartBottom, chartTop // y0 is the baseline
	)
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" font-family="system-ui, sans-serif" font-size="11">`,
		chartW, chartH)
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(title))

	points, top := 0, 0
	for _, s := range series {
		points += len(s.points)
		for _, p := range s.points {
			top = max(top, p.v)
		}
	}
	if points == 0 || len(times) == 0 {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>`, x0, y1, x1-x0, y0-y1)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#888">no data</text></svg>`, (x0+x1)/2, (y0+y1)/2)
		return template.HTML(b.String())
	}

	// Scales. A single step (or several at one instant) sits in the middle of the axis.
	ymax, ystep := chartScale(top)
	first, last := times[0], times[len(times)-1]
	span := last.Sub(first)
	xOf := func(t time.Time) float64 {
		if span <= 0 {
			return (x0 + x1) / 2.0
		}
		return x0 + float64(x1-x0)*float64(t.Sub(first))/float64(span)
	}
	yOf := func(v int) float64 { return y0 - float64(y0-y1)*float64(v)/float64(ymax) }

	// Count axis: grid lines and labels.
	for v := 0; v <= ymax; v += ystep {
		y := yOf(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#eee"/>`, x0, chartNum(y), x1, chartNum(y))
		fmt.Fprintf(&b, `<text x="%d" y="%s" text-anchor="end" fill="#555">%d</text>`, x0-6, chartNum(y+4), v)
	}
	// Time axis: up to chartXTicks step starts, spread evenly over the steps.
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>`, x0, y0, x1, y0)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>`, x0, y0, x0, y1)
	for _, i := range chartTicks(len(times), chartXTicks) {
		x := chartNum(xOf(times[i]))
		fmt.Fprintf(&b, `<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#888"/>`, x, y0, x, y0+4)
		fmt.Fprintf(&b, `<text x="%s" y="%d" text-anchor="middle" fill="#555">%s</text>`,
			x, y0+16, html.EscapeString(htmlClock(times[i])))
	}
	// Legend, above the plot.
	lx := x0
	for _, s := range series {
		fmt.Fprintf(&b, `<rect x="%d" y="8" width="10" height="10" fill="%s"/>`, lx, s.color)
		fmt.Fprintf(&b, `<text x="%d" y="17" fill="#333">%s</text>`, lx+14, html.EscapeString(s.name))
		lx += 14 + 7*len(s.name) + 20
	}
	if top == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#888">all zero</text>`, (x0+x1)/2, (y0+y1)/2)
	}
	// The lines, then a point per value with its exact number.
	for _, s := range series {
		if len(s.points) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" points="`, s.color)
			for i, p := range s.points {
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(chartNum(xOf(p.t)) + "," + chartNum(yOf(p.v)))
			}
			b.WriteString(`"/>`)
		}
		for _, p := range s.points {
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"><title>%s %s %d</title></circle>`,
				chartNum(xOf(p.t)), chartNum(yOf(p.v)), s.color,
				html.EscapeString(htmlClock(p.t)), html.EscapeString(s.name), p.v)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// chartScale returns the top of the count axis and the distance between its ticks: the smallest
// step of 1, 2 or 5 times a power of ten that needs at most five of them, and the first multiple
// of it reaching top. All-zero data gets the axis 0..1.
func chartScale(top int) (ymax, step int) {
	if top <= 0 {
		return 1, 1
	}
	want := float64(top) / 5
	for mag := 1; ; mag *= 10 {
		for _, m := range [...]int{1, 2, 5} {
			if step = m * mag; float64(step) >= want {
				return (top + step - 1) / step * step, step
			}
		}
	}
}

// chartTicks picks at most k of n indexes, spread evenly, the first and the last included.
func chartTicks(n, k int) []int {
	if n <= k {
		ticks := make([]int, n)
		for i := range ticks {
			ticks[i] = i
		}
		return ticks
	}
	ticks := make([]int, k)
	for i := range ticks {
		ticks[i] = i * (n - 1) / (k - 1)
	}
	return ticks
}

// chartNum formats a coordinate with one decimal, enough at this size.
func chartNum(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// htmlPage is the page. It has no action inside <style>, and the charts are the only
// template.HTML values it prints.
var htmlPage = template.Must(template.New("report").Parse(htmlPageText))

const htmlPageText = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sockscope report{{with .Source}} – {{.}}{{end}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; max-width: 1100px; margin: 0 auto; padding: 1em 1.5em 3em; }
h1 { font-size: 1.6em; margin: .3em 0 .5em; }
h2 { font-size: 1.3em; margin: 1.8em 0 .5em; padding-bottom: .2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; margin: 1.3em 0 .4em; }
table { border-collapse: collapse; margin: .3em 0 1em; }
th, td { text-align: left; padding: .25em .7em; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; }
.n { text-align: right; font-variant-numeric: tabular-nums; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .1em 1.2em; margin: 0; }
dl.meta dt { color: #666; }
dl.meta dd { margin: 0; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f3f3; padding: .1em .3em; border-radius: 3px; }
.lost { color: #b00; background: #fde8e8; font-weight: 600; padding: 0 .3em; border-radius: 3px; }
.finding { border-left: 4px solid #757575; padding: .3em .9em; margin: .7em 0; background: #fafafa; }
.finding p { margin: .3em 0; }
.finding.critical { border-color: #c62828; }
.finding.warning { border-color: #ef6c00; }
.sev { color: #fff; background: #757575; font-size: .8em; font-weight: 600; text-transform: uppercase; padding: .1em .45em; border-radius: 3px; }
.sev.critical { background: #c62828; }
.sev.warning { background: #ef6c00; }
ul.evidence { margin: .2em 0; padding-left: 1.2em; }
figure { margin: .6em 0 1em; }
figcaption { font-weight: 600; }
svg.chart { width: 100%; max-width: 720px; height: auto; }
.muted { color: #777; }
</style>
</head>
<body>
<h1>sockscope report</h1>
<dl class="meta">
<dt>Source</dt><dd>{{.Source}}</dd>
<dt>Host</dt><dd>{{.Hostname}}</dd>
<dt>Kernel</dt><dd>{{.Kernel}}</dd>
<dt>Start</dt><dd>{{.Start}}</dd>
<dt>End</dt><dd>{{.End}}</dd>
<dt>Interval</dt><dd>{{.Interval}}</dd>
<dt>Lost events</dt><dd>{{if .Lost}}<span class="lost">{{.Lost}} lost: the counts below miss them</span>{{else}}0{{end}}</dd>
{{range .Notes}}<dt>Note</dt><dd>{{.}}</dd>
{{end}}</dl>
{{with .Targets}}<p>Namespaces: {{range $i, $t := .}}{{if $i}}, {{end}}<a href="#{{$t.Anchor}}">{{$t.Name}}</a>{{end}}</p>{{end}}

<h2>Findings</h2>
{{range .Findings}}<div class="finding {{.Severity}}">
<p><span class="sev {{.Severity}}">{{.Severity}}</span> <b>{{.Kind}}</b> in <b>{{.Container}}</b></p>
<p>{{.Summary}}</p>
{{- with .Evidence}}
<ul class="evidence">{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{- with .Verify}}
<p>Verify: <code>{{.}}</code></p>{{end}}
{{- with .Fix}}
<p>Fix: {{.}}</p>{{end}}
</div>
{{else}}<p>No findings.</p>
{{end}}
{{- range .Targets}}
<h2 id="{{.Anchor}}">{{.Name}}</h2>
<dl class="meta">
{{- with .ID}}
<dt>Container ID</dt><dd><code>{{.}}</code></dd>{{end}}
{{- with .Image}}
<dt>Image</dt><dd>{{.}}</dd>{{end}}
<dt>Network namespace</dt><dd>{{.Netns}}</dd>
<dt>Started</dt><dd>{{.Started}}</dd>
<dt>Stopped</dt><dd>{{if .Stopped}}{{.Stopped}} (exit code {{.ExitCode}}){{else}}running at the end{{end}}</dd>
<dt>Settings</dt><dd>{{.Facts}}</dd>
</dl>
{{range .Charts}}<figure><figcaption>{{.Caption}}</figcaption>
{{.SVG}}
</figure>
{{end}}
<h3>Top remotes</h3>
{{with .TopRemotes}}<table>
<tr><th>Endpoint</th><th class="n">Connects</th><th class="n">Failures</th><th class="n">TIME_WAIT</th></tr>
{{range .}}<tr><td>{{.Endpoint}}</td><td class="n">{{.Connects}}</td><td class="n">{{.Failures}}</td><td class="n">{{.TimeWait}}</td></tr>
{{end}}</table>{{else}}<p class="muted">None.</p>{{end}}
<h3>Syscall hotspots</h3>
{{with .Syscalls}}<table>
<tr><th>Comm</th><th class="n">Pid</th><th>Syscall</th><th class="n">Count</th><th class="n">Errors</th></tr>
{{range .}}<tr><td>{{.Comm}}</td><td class="n">{{.Pid}}</td><td>{{.Syscall}}</td><td class="n">{{.Count}}</td><td class="n">{{.Errors}}</td></tr>
{{end}}</table>{{else}}<p class="muted">None.</p>{{end}}
<h3>Syscall errors</h3>
{{with .Errors}}<table>
<tr><th>Comm</th><th class="n">Pid</th><th>Syscall</th><th>Errno</th><th class="n">Count</th></tr>
{{range .}}<tr><td>{{.Comm}}</td><td class="n">{{.Pid}}</td><td>{{.Syscall}}</td><td>{{.Errno}}</td><td class="n">{{.Count}}</td></tr>
{{end}}</table>{{else}}<p class="muted">None.</p>{{end}}
{{with .Flame}}<h3>Stacks</h3>
<figure><figcaption>Where the syscalls came from: callers below, the calls on top; each frame as wide as its calls (hover for counts).</figcaption>
{{.}}
</figure>{{end}}
<h3>Timeline (UTC)</h3>
{{with .Timeline}}<table>
<tr><th>Step start</th><th class="n">Connects</th><th>Failures</th><th class="n">Resets</th><th class="n">ESTABLISHED</th><th class="n">TIME_WAIT</th></tr>
{{range .}}<tr><td>{{.Start}}</td><td class="n">{{.Connects}}</td><td>{{.Failures}}</td><td class="n">{{.Resets}}</td><td class="n">{{.Established}}</td><td class="n">{{.TimeWait}}</td></tr>
{{end}}</table>{{else}}<p class="muted">No steps.</p>{{end}}
{{end}}
</body>
</html>
`
