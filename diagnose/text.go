package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sockscope/sockscope/events"
)

// WriteFindings prints findings for a terminal: one block per finding.
func WriteFindings(w io.Writer, findings []Finding) error {
	var b strings.Builder
	if len(findings) == 0 {
		b.WriteString("No findings.\n")
	}
	for i, f := range findings {
		if i > 0 {
			b.WriteByte('\n')
		}
		// Names in findings come from the recording: shown Printable. The verify command is
		// built with every name quoted (shellQuote), escapes included, to be pasted as it is.
		fmt.Fprintf(&b, "%s  %s  %s\n  %s\n", strings.ToUpper(f.Severity.String()), f.Kind, events.Printable(f.Container), events.Printable(f.Summary))
		for _, e := range f.Evidence {
			fmt.Fprintf(&b, "  - %s\n", events.Printable(e))
		}
		fmt.Fprintf(&b, "  verify: %s\n  fix:    %s\n", f.Verify, events.Printable(f.Fix))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// findingJSON is a finding with its severity spelled out, for programs.
type findingJSON struct {
	Kind      string             `json:"kind"`
	Severity  string             `json:"severity"`
	Container string             `json:"container"`
	K8sNs     string             `json:"k8s_namespace"`
	K8sPod    string             `json:"k8s_pod"`
	Netns     uint32             `json:"netns"`
	Summary   string             `json:"summary"`
	Evidence  []string           `json:"evidence"`
	Numbers   map[string]float64 `json:"numbers"`
	Verify    string             `json:"verify"`
	Fix       string             `json:"fix"`
}

// WriteFindingsJSON prints one JSON object per line per finding.
func WriteFindingsJSON(w io.Writer, findings []Finding) error {
	var b []byte
	for _, f := range findings {
		j, err := json.Marshal(findingJSON{f.Kind, f.Severity.String(), f.Container, f.K8sNamespace, f.K8sPod, f.Netns, f.Summary, f.Evidence, f.Numbers, f.Verify, f.Fix})
		if err != nil {
			return err
		}
		b = append(append(b, j...), '\n')
	}
	_, err := w.Write(b)
	return err
}

// WriteText prints the report for a terminal: the findings, then per namespace its facts,
// timeline, top remote endpoints and syscall hotspots.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "sockscope report: %s\n", events.Printable(r.Source))
	fmt.Fprintf(&b, "host %s, kernel %s; %s to %s (%s), every %s\n", events.Printable(r.Hostname), events.Printable(r.Kernel),
		r.Start.UTC().Format(time.RFC3339), r.End.UTC().Format(time.RFC3339), r.End.Sub(r.Start).Round(time.Second), r.Interval)
	if r.Lost > 0 {
		fmt.Fprintf(&b, "WARNING: %d events were lost; the counts below miss them\n", r.Lost)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", events.Printable(n))
	}
	b.WriteString("\nFindings:\n")
	var fb strings.Builder
	WriteFindings(&fb, r.Findings)
	for _, line := range strings.SplitAfter(fb.String(), "\n") {
		if line != "" && line != "\n" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "\n== %s", events.Printable(t.Name))
		if t.ID != "" {
			fmt.Fprintf(&b, " (%s, %s)", events.Printable(t.ID), events.Printable(t.Image))
		}
		fmt.Fprintf(&b, " netns %d\n", t.Netns)
		if !t.Started.IsZero() {
			fmt.Fprintf(&b, "started %s\n", t.Started.UTC().Format(time.RFC3339))
		}
		if !t.Stopped.IsZero() {
			fmt.Fprintf(&b, "stopped %s, exit code %d\n", t.Stopped.UTC().Format(time.RFC3339), t.ExitCode)
		}
		if t.Facts.PortRange[0] > 0 {
			fmt.Fprintf(&b, "ip_local_port_range %d-%d, tcp_tw_reuse %d, somaxconn %d\n", t.Facts.PortRange[0], t.Facts.PortRange[1], t.Facts.TWReuse, t.Facts.Somaxconn)
		}
		table(&b, "", "TIME\tCONNECTS\tFAILED\tRESETS\tESTABLISHED\tTIME_WAIT", t.Timeline, func(s Step) []any {
			est, twait := any("-"), any("-")
			if s.HasSnapshot {
				est, twait = s.States["ESTABLISHED"], s.States["TIME_WAIT"]
			}
			return []any{s.Start.UTC().Format("15:04:05"), s.Connects, failures(s.Failures), s.Resets, est, twait}
		})
		table(&b, "remote endpoints", "ENDPOINT\tCONNECTS\tFAILED\tTIME_WAIT", t.TopRemotes, func(rc RemoteCount) []any {
			return []any{rc.Endpoint, rc.Connects, rc.Failures, rc.TimeWait}
		})
		table(&b, "syscalls", "COMM\tPID\tSYSCALL\tCOUNT\tERRORS", t.Syscalls, func(s SyscallCount) []any {
			return []any{s.Comm, s.Pid, s.Syscall, s.Count, s.Errors}
		})
		table(&b, "syscall failures", "COMM\tPID\tSYSCALL\tERRNO\tCOUNT", t.Errors, func(e SyscallErrors) []any {
			return []any{e.Comm, e.Pid, e.Syscall, e.Errno, e.Count}
		})
		writeStacksText(&b, t.Stacks)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// table writes an aligned table of rows under a title ("": no title and no indent); nothing
// when a titled table has no rows.
func table[T any](b *strings.Builder, title, header string, rows []T, cells func(T) []any) {
	indent := ""
	if title != "" {
		if len(rows) == 0 {
			return
		}
		b.WriteString(title + ":\n")
		indent = "  "
	}
	tw := tabwriter.NewWriter(b, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, indent+header)
	for _, r := range rows {
		c := cells(r)
		parts := make([]string, len(c))
		for i, v := range c {
			parts[i] = events.Printable(fmt.Sprint(v)) // comm and names come from the recording
		}
		fmt.Fprintln(tw, indent+strings.Join(parts, "\t"))
	}
	tw.Flush()
}

// failures is "-" or "EADDRNOTAVAIL 3, ECONNREFUSED 1", most first.
func failures(m map[string]int) string {
	if s := htmlFailures(m); s != "" {
		return s
	}
	return "-"
}
