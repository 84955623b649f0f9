package diagnose

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// htmlTestReport is a report with two findings, a container with five steps of real numbers,
// and the host with no steps at all.
func htmlTestReport() *Report {
	start := time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	steps := make([]Step, 5)
	for i := range steps {
		steps[i] = Step{Start: start.Add(time.Duration(i) * 10 * time.Second)}
	}
	steps[0].Connects = 12
	steps[1].Connects = 57
	steps[1].Failures = map[string]int{"ECONNREFUSED": 1, "EADDRNOTAVAIL": 3}
	steps[1].Resets = 2
	steps[1].HasSnapshot = true
	steps[1].States = map[string]int{"ESTABLISHED": 41, "TIME_WAIT": 2817}
	steps[2].Connects = 203
	steps[2].Failures = map[string]int{"EADDRNOTAVAIL": 96}
	steps[3].Connects = 8
	steps[3].Resets = 9
	steps[3].HasSnapshot = true
	steps[3].States = map[string]int{"ESTABLISHED": 12, "TIME_WAIT": 28229, "CLOSE_WAIT": 4}
	steps[4].Connects = 0

	return &Report{
		Source:   "/var/tmp/incident.scope",
		Hostname: "build-07",
		Kernel:   "6.8.0-45-generic",
		Start:    start,
		End:      start.Add(50 * time.Second),
		Interval: 10 * time.Second,
		Lost:     17,
		Findings: []Finding{
			{
				Kind: "port_exhaustion", Severity: Critical, Container: "api-gateway", Netns: 4026532841,
				Summary:  "api-gateway ran out of local ports: 99 connects failed with EADDRNOTAVAIL",
				Evidence: []string{"TIME_WAIT peaked at 28229 sockets", "port range 32768–60999 holds 28232 ports"},
				Verify:   "nsenter -n -t 4242 ss -tan state time-wait | wc -l",
				Fix:      "Reuse connections (keep-alive) or set net.ipv4.tcp_tw_reuse=1.",
			},
			{
				Kind: "reset_storm", Severity: Info, Container: "host",
				Summary: "11 connections reset",
				Verify:  "ss -tin",
			},
		},
		Targets: []Target{
			{
				Name: "host", Netns: 4026531840,
				Facts: NetnsFacts{PortRange: [2]int{32768, 60999}, TWReuse: 2, Somaxconn: 4096},
			},
			{
				Name: "api-gateway", ID: "3f2a9c1d7e4b", Image: "registry.local/api:1.4", Netns: 4026532841,
				Started:  start.Add(-time.Hour),
				Stopped:  start.Add(45 * time.Second),
				ExitCode: 137,
				Facts:    NetnsFacts{PortRange: [2]int{32768, 60999}, TWReuse: 0, Somaxconn: 4096},
				Timeline: steps,
				TopRemotes: []RemoteCount{
					{Endpoint: "10.0.3.7:5432", Connects: 250, Failures: 99, TimeWait: 28001},
				},
				Syscalls: []SyscallCount{
					{Comm: "gateway", Pid: 4242, Syscall: "connect", Count: 280, Errors: 100},
				},
				Errors: []SyscallErrors{
					{Comm: "gateway", Pid: 4242, Syscall: "connect", Errno: "EADDRNOTAVAIL", Count: 99},
				},
			},
		},
	}
}

func htmlRender(t *testing.T, r *Report) string {
	t.Helper()
	var b strings.Builder
	if err := WriteHTML(&b, r); err != nil {
		t.Fatalf("WriteHTML: %v", err)
	}
	return b.String()
}

// htmlSVGs returns every <svg>...</svg> in page.
func htmlSVGs(t *testing.T, page string) []string {
	t.Helper()
	var frags []string
	for rest := page; ; {
		i := strings.Index(rest, "<svg")
		if i < 0 {
			return frags
		}
		j := strings.Index(rest[i:], "</svg>")
		if j < 0 {
			t.Fatalf("unterminated <svg> at %q", rest[i:min(len(rest), i+80)])
		}
		end := i + j + len("</svg>")
		frags = append(frags, rest[i:end])
		rest = rest[end:]
	}
}

// htmlSection returns the part of page from the first from to the next to after it.
func htmlSection(t *testing.T, page, from, to string) string {
	t.Helper()
	i := strings.Index(page, from)
	if i < 0 {
		t.Fatalf("page has no %q", from)
	}
	j := strings.Index(page[i:], to)
	if j < 0 {
		t.Fatalf("page has no %q after %q", to, from)
	}
	return page[i : i+j]
}

func TestWriteHTMLContent(t *testing.T) {
	page := htmlRender(t, htmlTestReport())

	for _, want := range []string{
		"<title>sockscope report – /var/tmp/incident.scope</title>",
		"build-07", "6.8.0-45-generic",
		"2025-03-14T09:30:00Z", "2025-03-14T09:30:50Z", "10s",
		`<span class="lost">17 lost`,
		// Containers and their details.
		`<h2 id="target-0">host</h2>`, `<h2 id="target-1">api-gateway</h2>`,
		"3f2a9c1d7e4b", "registry.local/api:1.4", "4026532841",
		"2025-03-14T08:30:00Z", "2025-03-14T09:30:45Z (exit code 137)", "running at the end",
		"ip_local_port_range 32768–60999, tcp_tw_reuse 2, somaxconn 4096",
		// Findings, most severe first as given.
		`<span class="sev critical">critical</span>`, `<span class="sev info">info</span>`,
		"api-gateway ran out of local ports: 99 connects failed with EADDRNOTAVAIL",
		"<li>TIME_WAIT peaked at 28229 sockets</li>",
		"<code>nsenter -n -t 4242 ss -tan state time-wait | wc -l</code>",
		"Reuse connections (keep-alive) or set net.ipv4.tcp_tw_reuse=1.",
		// Tables.
		`<td>10.0.3.7:5432</td><td class="n">250</td><td class="n">99</td><td class="n">28001</td>`,
		`<td>gateway</td><td class="n">4242</td><td>connect</td><td class="n">280</td><td class="n">100</td>`,
		`<td>gateway</td><td class="n">4242</td><td>connect</td><td>EADDRNOTAVAIL</td><td class="n">99</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "No findings.") {
		t.Error(`page says "No findings." with two findings`)
	}
	if i, j := strings.Index(page, "port_exhaustion"), strings.Index(page, "reset_storm"); i < 0 || j < i {
		t.Errorf("findings out of order: port_exhaustion at %d, reset_storm at %d", i, j)
	}

	// The timeline table has exactly the steps' numbers, failures by errno most first, and no
	// socket counts for steps without a snapshot.
	timeline := htmlSection(t, page[strings.Index(page, `id="target-1"`):], "<h3>Timeline (UTC)</h3>", "</table>")
	for _, row := range []string{
		`<tr><td>09:30:00</td><td class="n">12</td><td></td><td class="n">0</td><td class="n"></td><td class="n"></td></tr>`,
		`<tr><td>09:30:10</td><td class="n">57</td><td>EADDRNOTAVAIL 3, ECONNREFUSED 1</td><td class="n">2</td><td class="n">41</td><td class="n">2817</td></tr>`,
		`<tr><td>09:30:20</td><td class="n">203</td><td>EADDRNOTAVAIL 96</td><td class="n">0</td><td class="n"></td><td class="n"></td></tr>`,
		`<tr><td>09:30:30</td><td class="n">8</td><td></td><td class="n">9</td><td class="n">12</td><td class="n">28229</td></tr>`,
		`<tr><td>09:30:40</td><td class="n">0</td><td></td><td class="n">0</td><td class="n"></td><td class="n"></td></tr>`,
	} {
		if !strings.Contains(timeline, row) {
			t.Errorf("timeline lacks row %s", row)
		}
	}
	if n := strings.Count(timeline, "<tr><td>"); n != 5 {
		t.Errorf("timeline has %d rows, want 5", n)
	}

	// Three charts per target; the host's are empty, the container's carry every value as a
	// hover title, with only the two snapshot steps in the socket chart.
	svgs := htmlSVGs(t, page)
	if len(svgs) != 6 {
		t.Fatalf("page has %d charts, want 6", len(svgs))
	}
	for i, svg := range svgs[:3] {
		if !strings.Contains(svg, "no data") || strings.Contains(svg, "<circle") {
			t.Errorf("host chart %d is not empty: %s", i, svg)
		}
	}
	connects, sockets, resets := svgs[3], svgs[4], svgs[5]
	for _, want := range []string{
		"<title>09:30:10 connects 57</title>", "<title>09:30:20 connects 203</title>",
		"<title>09:30:10 failures 4</title>", "<title>09:30:20 failures 96</title>",
		"<title>09:30:40 failures 0</title>",
		">connects</text>", ">failures</text>", // legend
		">09:30:00</text>", ">09:30:40</text>", // first and last time ticks
		">250</text>", // the count axis: 203 rounds up to 250 in steps of 50
	} {
		if !strings.Contains(connects, want) {
			t.Errorf("connects chart lacks %q", want)
		}
	}
	if n := strings.Count(connects, "<circle"); n != 10 {
		t.Errorf("connects chart has %d points, want 10", n)
	}
	for _, want := range []string{
		"<title>09:30:10 ESTABLISHED 41</title>", "<title>09:30:30 TIME_WAIT 28229</title>",
		">ESTABLISHED</text>", ">TIME_WAIT</text>",
	} {
		if !strings.Contains(sockets, want) {
			t.Errorf("sockets chart lacks %q", want)
		}
	}
	if n := strings.Count(sockets, "<circle"); n != 4 {
		t.Errorf("sockets chart has %d points, want 4 (two snapshots, two states)", n)
	}
	if !strings.Contains(resets, "<title>09:30:30 resets 9</title>") || strings.Count(resets, "<circle") != 5 {
		t.Errorf("resets chart lacks its five points: %s", resets)
	}
}

func TestWriteHTMLNoFindings(t *testing.T) {
	r := htmlTestReport()
	r.Findings = nil
	r.Lost = 0
	page := htmlRender(t, r)
	if !strings.Contains(page, "<p>No findings.</p>") {
		t.Error(`page without findings does not say "No findings."`)
	}
	if strings.Contains(page, `class="lost"`) {
		t.Error("lost events highlighted while none were lost")
	}
}

func TestWriteHTMLEscapes(t *testing.T) {
	const evil = `<script>alert(1)</script>`
	r := htmlTestReport()
	r.Source = evil
	r.Hostname = `"><img src=x onerror=alert(1)>`
	r.Targets[1].Name = evil
	r.Targets[1].Image = evil
	r.Targets[1].TopRemotes[0].Endpoint = evil
	r.Targets[1].Timeline[1].Failures = map[string]int{evil: 5}
	r.Findings[0].Container = evil
	r.Findings[0].Evidence = append(r.Findings[0].Evidence, evil)
	r.Findings[0].Verify = evil
	page := htmlRender(t, r)

	if strings.Contains(page, "<script") || strings.Contains(page, "<img") {
		t.Fatalf("page has unescaped markup from the report:\n%s", page)
	}
	escaped := "&lt;script&gt;alert(1)&lt;/script&gt;"
	if n := strings.Count(page, escaped); n < 7 {
		t.Errorf("escaped name appears %d times, want at least 7", n)
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt; 5") {
		t.Error("escaped errno name missing from the timeline")
	}
}

func TestWriteHTMLSelfContained(t *testing.T) {
	page := htmlRender(t, htmlTestReport())
	for _, banned := range []string{"http", "<script", "<link", "<img", "@import", "url("} {
		if strings.Contains(strings.ToLower(page), banned) {
			t.Errorf("page contains %q: it must not load anything", banned)
		}
	}
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.HasSuffix(page, "</html>\n") {
		t.Error("page is not a whole HTML document")
	}
}

func TestWriteHTMLSVGWellFormed(t *testing.T) {
	r := htmlTestReport()
	r.Targets[1].Name = `a<b & "c"`
	single := htmlTestReport().Targets[1]
	single.Timeline = single.Timeline[1:2]
	r.Targets = append(r.Targets, single)
	svgs := htmlSVGs(t, htmlRender(t, r))
	if len(svgs) != 9 {
		t.Fatalf("page has %d charts, want 9", len(svgs))
	}
	for i, svg := range svgs {
		d := xml.NewDecoder(strings.NewReader(svg))
		depth := 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("chart %d: %v\n%s", i, err, svg)
			}
			switch tok.(type) {
			case xml.StartElement:
				depth++
			case xml.EndElement:
				depth--
			}
		}
		if depth != 0 {
			t.Errorf("chart %d: %d elements left open", i, depth)
		}
	}
}

func TestWriteHTMLDegenerateTimelines(t *testing.T) {
	start := time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	one := []Step{{Start: start, Connects: 57, Failures: map[string]int{"EADDRNOTAVAIL": 3}, Resets: 1,
		HasSnapshot: true, States: map[string]int{"ESTABLISHED": 5, "TIME_WAIT": 7}}}
	zero := make([]Step, 4)
	for i := range zero {
		zero[i] = Step{Start: start.Add(time.Duration(i) * time.Second), HasSnapshot: true}
	}
	r := &Report{Start: start, Targets: []Target{
		{Name: "single", Timeline: one},
		{Name: "zeros", Timeline: zero},
		{Name: "nosnapshot", Timeline: []Step{{Start: start, Connects: 1}, {Start: start.Add(time.Second)}}},
		{Name: "sameinstant", Timeline: []Step{{Start: start, Connects: 1}, {Start: start, Connects: 2}}},
	}}
	page := htmlRender(t, r)
	for _, bad := range []string{"NaN", "Inf"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %s", bad)
		}
	}
	svgs := htmlSVGs(t, page)
	if len(svgs) != 12 {
		t.Fatalf("page has %d charts, want 12", len(svgs))
	}

	// A single step is one point per series, in the middle of the time axis, with no line.
	singleMid := `cx="366.0"` // halfway between 52 and 720-40
	for i, svg := range svgs[:3] {
		if strings.Contains(svg, "<polyline") || !strings.Contains(svg, singleMid) || strings.Contains(svg, "no data") {
			t.Errorf("single-step chart %d is not one point per series mid-axis: %s", i, svg)
		}
	}
	if !strings.Contains(svgs[0], "<title>09:30:00 connects 57</title>") {
		t.Error("single-step chart lacks its point's value")
	}

	// All-zero data is a flat line on the baseline on an axis 0..1.
	baseline := `cy="184.0"`
	for i, svg := range svgs[3:6] {
		if !strings.Contains(svg, "all zero") || !strings.Contains(svg, "<polyline") || !strings.Contains(svg, ">1</text>") {
			t.Errorf("all-zero chart %d is not flat: %s", i, svg)
		}
		if n, m := strings.Count(svg, baseline), strings.Count(svg, "<circle"); n != m || n == 0 {
			t.Errorf("all-zero chart %d: %d of %d points on the baseline", i, n, m)
		}
	}

	// Steps without snapshots leave the socket chart empty.
	if !strings.Contains(svgs[7], "no data") {
		t.Errorf("socket chart without snapshots is not empty: %s", svgs[7])
	}
	// Steps at one instant sit mid-axis too.
	if !strings.Contains(svgs[9], singleMid) {
		t.Errorf("steps at one instant are not mid-axis: %s", svgs[9])
	}
}

func TestChartScale(t *testing.T) {
	for _, c := range []struct{ top, ymax, step int }{
		{0, 1, 1}, {-3, 1, 1}, {1, 1, 1}, {3, 3, 1}, {4, 4, 1}, {5, 5, 1}, {9, 10, 2},
		{57, 60, 20}, {203, 250, 50}, {28229, 30000, 10000},
	} {
		ymax, step := chartScale(c.top)
		if ymax != c.ymax || step != c.step {
			t.Errorf("chartScale(%d) = %d, %d, want %d, %d", c.top, ymax, step, c.ymax, c.step)
		}
		if ymax < c.top || ymax%step != 0 || ymax/step > 5 {
			t.Errorf("chartScale(%d) = %d, %d: not a short axis reaching the top", c.top, ymax, step)
		}
	}
}

type htmlFailingWriter struct{}

func (htmlFailingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteHTMLErrors(t *testing.T) {
	if err := WriteHTML(htmlFailingWriter{}, htmlTestReport()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("WriteHTML to a failing writer: %v, want disk full", err)
	}
	if err := WriteHTML(io.Discard, nil); err == nil {
		t.Error("WriteHTML(nil report) succeeded")
	}
}
