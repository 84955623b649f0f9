package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// report writes the matrix as markdown to stdout and to cfg.out: one line per kernel, then
// each test on each kernel, then what `sockscope version` found on each.
func report(cfg config, rows []row, took time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## Kernel matrix (make kernels, %s, %s in all)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), took.Round(time.Second))
	b.WriteString("| kernel | from | ran as | result | boot | total |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		result := r.Summary
		if r.Skipped != "" {
			result = "skipped: " + r.Skipped
		} else if r.OK {
			result = "pass: " + result
		} else {
			result = "FAIL: " + result
		}
		boot := "-"
		if r.Boot > 0 {
			boot = r.Boot.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", release(r), r.Package, r.Where, cell(result), boot, r.Took.Round(time.Second))
	}

	b.WriteString("\n| test |")
	for _, r := range rows {
		fmt.Fprintf(&b, " %s |", release(r))
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(rows)) + "\n")
	for _, name := range allTests() {
		if !slices.ContainsFunc(rows, func(r row) bool { return slices.Contains(r.Tests, name) }) {
			continue
		}
		fmt.Fprintf(&b, "| %s |", name)
		for _, r := range rows {
			t, ok := r.Run.Tests[name]
			switch {
			case r.Skipped != "":
				b.WriteString(" skipped |")
			case !slices.Contains(r.Tests, name):
				b.WriteString(" not in its set |")
			case !ok:
				b.WriteString(" did not run |")
			default:
				fmt.Fprintf(&b, " %s %.1f s |", strings.ToLower(t.Status), t.Seconds)
			}
		}
		b.WriteString("\n")
	}

	var names []string
	seen := map[string]bool{}
	for _, r := range rows {
		for _, f := range r.Run.Features {
			if !seen[f.Name] {
				seen[f.Name] = true
				names = append(names, f.Name)
			}
		}
	}
	if len(names) > 0 {
		b.WriteString("\n`sockscope version`, kernel features:\n\n| feature |")
		for _, r := range rows {
			fmt.Fprintf(&b, " %s |", release(r))
		}
		b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(rows)) + "\n")
		for _, n := range names {
			fmt.Fprintf(&b, "| %s |", n)
			for _, r := range rows {
				status := "-"
				for _, f := range r.Run.Features {
					if f.Name == n {
						status = f.Status
					}
				}
				fmt.Fprintf(&b, " %s |", cell(status))
			}
			b.WriteString("\n")
		}
	}
	fmt.Print(b.String())
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(cfg.out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	logf("report: %s", cfg.out)
	return nil
}

func release(r row) string {
	if r.Run.Release != "" {
		return r.Run.Release
	}
	return r.Name
}

// cell keeps a table cell on one line and its pipes from splitting it.
func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", `\|`)
}
