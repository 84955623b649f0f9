// Command sockscope makes containers' TCP life visible from the host, with eBPF.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	"github.com/sockscope/sockscope/loader"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `sockscope makes every container's TCP life visible from the host, with eBPF.

Usage:
  sockscope trace [flags]   live TCP state transitions and connect outcomes, per container
  sockscope sockets [flags] TCP sockets of the host or containers (like ss -tan), TIME_WAIT included
  sockscope syscalls [flags] syscall hotspots per container: counts, errors, latency, paths
  sockscope export [flags]  Prometheus exporter: per-container TCP counts kept in the kernel
  sockscope record -w FILE  record events, snapshots, syscalls and settings for later analysis
  sockscope report FILE     incident summary of a recording: timelines, top remotes, hotspots
  sockscope diagnose [flags] findings with evidence and fixes, live or from a recording (-r)
  sockscope version         the version and the kernel features sockscope found
  sockscope help            this text

Run 'sockscope COMMAND --help' for a command's flags.
`

// newFlagSet is a command's flag set: errors are returned, never printed by pflag.
func newFlagSet(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// anyArgs, as parseFlags' hint, lets a command take positional arguments.
const anyArgs = "\x00any"

// parseFlags parses a command's flags, adding -h/--help: with it, it prints "Usage: " usage and
// the flags, and reports helped. A positional argument is a usage error that ends with hint (how
// the thing is given instead), unless hint is anyArgs.
func parseFlags(fs *pflag.FlagSet, args []string, stdout io.Writer, usage, hint string) (helped bool, err error) {
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		return false, usageError{err.Error()}
	}
	if *help {
		fmt.Fprintf(stdout, "Usage: %s\n\nFlags:\n%s", usage, fs.FlagUsages())
		return true, nil
	}
	if hint != anyArgs && fs.NArg() > 0 {
		msg := fmt.Sprintf("unexpected argument %q", fs.Arg(0))
		if hint != "" {
			msg += " (" + hint + ")"
		}
		return false, usageError{msg}
	}
	return false, nil
}

// oneOf checks a flag that takes one of a few words, as every --output does:
// `--output must be table or json, not "csv"`.
func oneOf(flag, value string, choices ...string) error {
	if slices.Contains(choices, value) {
		return nil
	}
	list := choices[0]
	if n := len(choices); n > 1 {
		list = strings.Join(choices[:n-1], ", ") + " or " + choices[n-1]
	}
	return usageError{fmt.Sprintf("--%s must be %s, not %q", flag, list, value)}
}

// usageError is a bad command line: exit status 2, with a hint to --help.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "trace":
		err = runTrace(args[1:], stdout, stderr)
	case "sockets":
		err = runSockets(args[1:], stdout, stderr)
	case "syscalls":
		err = runSyscalls(args[1:], stdout, stderr)
	case "export":
		err = runExport(args[1:], stdout, stderr)
	case "record":
		err = runRecord(args[1:], stdout, stderr)
	case "report":
		err = runReport(args[1:], stdout, stderr)
	case "diagnose":
		err = runDiagnose(args[1:], stdout, stderr)
	case "version", "--version":
		err = runVersion(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		cmd := "sockscope"
		if slices.Contains([]string{"trace", "sockets", "syscalls", "export", "record", "report", "diagnose", "version"}, args[0]) {
			cmd = "sockscope " + args[0]
		}
		fmt.Fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", cmd, events.Printable(ue.msg), cmd)
		return 2
	default:
		// One line, whatever a name or a file in the error holds.
		fmt.Fprintf(stderr, "sockscope: %s\n", events.Printable(err.Error()))
		return 1
	}
}

func runVersion(args []string, stdout io.Writer) error {
	var rf runtimeFlags
	fs := newFlagSet("sockscope version")
	rf.add(fs)
	if helped, err := parseFlags(fs, args, stdout, "sockscope version [flags]\n\nThe version, the kernel features sockscope found, and the container runtimes that name namespaces.", ""); err != nil || helped {
		return err
	}
	fmt.Fprintf(stdout, "sockscope %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintln(stdout, "kernel features:")
	loader.WriteFeatures(stdout, loader.Features())
	fmt.Fprintln(stdout, "container runtimes:")
	opts := rf.options()
	rts, probes, _ := containers.Discover(context.Background(), opts) // a named runtime that failed is listed, with why: version reports, it does not fail
	for _, rt := range rts {
		rt.Close()
	}
	containers.WriteProbes(stdout, probes, opts)
	return nil
}
