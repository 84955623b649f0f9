package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The protocol on a guest's results port (tools/kernels/init.sh), the same for the host's run:
//
//	sockscope-kernels: kernel RELEASE
//	sockscope-kernels: version
//	(sockscope version)
//	sockscope-kernels: tests PATTERN
//	(the test binary's -test.v output)
//	sockscope-kernels: exit STATUS
const marker = "sockscope-kernels: "

// outcome is what one kernel's run reported.
type outcome struct {
	Release  string
	Version  string    // sockscope version's first line
	Features []feature // its kernel features
	Tests    map[string]testResult
	Order    []string // tests in the order they finished
	Exit     int      // the test binary's exit status; -1 if it never said
	Notes    []string // lines the init said beyond the protocol (a module that did not load)
	Output   []string // the test output, for failures
}

type feature struct {
	Name   string
	Status string // "yes", or "no (...)"
}

type testResult struct {
	Status  string // PASS, FAIL, SKIP
	Seconds float64
}

var (
	topResult   = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)
	featureLine = regexp.MustCompile(`^\s+(\S.*?)\s{2,}(yes|no\b.*)$`)
)

// parseRun reads the results protocol.
func parseRun(text string) outcome {
	r := outcome{Tests: map[string]testResult{}, Exit: -1}
	section := ""
	inFeatures := false
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, marker); ok {
			word, arg, _ := strings.Cut(rest, " ")
			switch word {
			case "kernel":
				r.Release = arg
			case "version", "tests":
				section = word
			case "exit":
				if n, err := strconv.Atoi(arg); err == nil {
					r.Exit = n
				}
				section = ""
			default:
				r.Notes = append(r.Notes, rest)
			}
			continue
		}
		switch section {
		case "version":
			switch {
			case r.Version == "":
				r.Version = strings.TrimSpace(line)
			case !strings.HasPrefix(line, " "):
				inFeatures = line == "kernel features:"
			case inFeatures:
				if m := featureLine.FindStringSubmatch(line); m != nil {
					r.Features = append(r.Features, feature{Name: m[1], Status: m[2]})
				}
			}
		case "tests":
			r.Output = append(r.Output, line)
			if m := topResult.FindStringSubmatch(line); m != nil {
				s, _ := strconv.ParseFloat(m[3], 64)
				if _, seen := r.Tests[m[2]]; !seen {
					r.Order = append(r.Order, m[2])
				}
				r.Tests[m[2]] = testResult{Status: m[1], Seconds: s}
			}
		}
	}
	return r
}

// verdict checks a run against the tests it had to run: every one passed and the binary
// exited 0. A test that did not run at all fails it too, so a renamed test cannot drop out.
func (r outcome) verdict(want []string) (ok bool, summary string) {
	passed := 0
	var bad []string
	for _, name := range want {
		switch t, ran := r.Tests[name]; {
		case !ran:
			bad = append(bad, name+" did not run")
		case t.Status != "PASS":
			bad = append(bad, name+" "+t.Status)
		default:
			passed++
		}
	}
	summary = fmt.Sprintf("%d of %d passed", passed, len(want))
	if r.Exit != 0 {
		if r.Exit == -1 {
			bad = append(bad, "the tests did not finish")
		} else {
			bad = append(bad, fmt.Sprintf("test binary exit status %d", r.Exit))
		}
	}
	if len(bad) > 0 {
		return false, summary + "; " + strings.Join(bad, ", ")
	}
	return true, summary
}

// failedOutput is the -v output of the tests that failed, from their RUN line to their result.
func (r outcome) failedOutput() string {
	var b strings.Builder
	in := ""
	for _, line := range r.Output {
		if name, ok := strings.CutPrefix(line, "=== RUN   "); ok && !strings.Contains(name, "/") {
			in = ""
			if t := r.Tests[name]; t.Status == "FAIL" {
				in = name
			}
		}
		if in != "" {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
