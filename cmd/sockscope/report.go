package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sockscope/sockscope/diagnose"
	"github.com/sockscope/sockscope/recorder"
	"github.com/sockscope/sockscope/recording"
)

func runReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sockscope report")
	queries := fs.StringArrayP("container", "c", nil, "only this container or pod (a name, an ID prefix, NAMESPACE/POD, or a pod name); repeatable")
	netns := fs.StringArray("netns", nil, "only this network namespace (its inode, or host); repeatable")
	htmlFile := fs.String("html", "", "also write the report as a self-contained HTML page with charts to this file")
	top := fs.Int("top", 10, "rows per list (remote endpoints, syscalls, errors)")
	output := fs.StringP("output", "o", "text", "output format: text or json")
	maxInflate := maxInflateFlag(fs)
	if helped, err := parseFlags(fs, args, stdout, "sockscope report FILE [flags]\n\nAn incident summary of a recording: findings, then per container a timeline of connects,\nfailures by errno, resets and socket states, the top remote endpoints and syscall hotspots.", anyArgs); err != nil || helped {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"give one recording: sockscope report FILE (made with sockscope record -w FILE)"}
	}
	if err := oneOf("output", *output, "text", "json"); err != nil {
		return err
	}
	if *top < 1 {
		return usageError{fmt.Sprintf("--top must be at least 1, not %d", *top)}
	}
	budget, err := parseMaxInflate(*maxInflate)
	if err != nil {
		return err
	}
	file := fs.Arg(0)
	return replay(file, budget, *queries, *netns, stderr, func(rec *recording.File, only map[uint32]bool) error {
		r, err := diagnose.Summarize(rec, file, only, *top)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if *htmlFile != "" {
			if err := diagnose.WriteHTMLFile(*htmlFile, r); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "sockscope: wrote %s\n", *htmlFile)
		}
		return diagnose.Print(stdout, r, *output == "json")
	})
}

func runDiagnose(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sockscope diagnose")
	queries := fs.StringArrayP("container", "c", nil, "diagnose this container or pod (a name, an ID prefix, NAMESPACE/POD, or a pod name); repeatable; default: the host and every container")
	netns := fs.StringArray("netns", nil, "this network namespace: an inode, or live a path such as /run/netns/NAME; repeatable")
	duration := fs.Duration("duration", 30*time.Second, "live: how long to watch before diagnosing")
	interval := fs.Duration("interval", 2*time.Second, "live: how often sockets, syscalls and facts are sampled")
	read := fs.StringP("read", "r", "", "diagnose a recording (sockscope record -w FILE) instead of watching live")
	output := fs.StringP("output", "o", "text", "output format: text or json (one finding per line)")
	maxInflate := maxInflateFlag(fs)
	var rf runtimeFlags
	rf.add(fs)
	if helped, err := parseFlags(fs, args, stdout, "sockscope diagnose [flags]\n\nWatch live (or read a recording) and report what is wrong: local port exhaustion, connection\nleaks (still growing, or stopped at the server's limit), file descriptor limits, refusals\n(connects refused, or accepted and closed at once), resets, retransmits, containers killed with\nopen connections. Each finding has its evidence, the command that verifies it, and the fix.", "a recording is given with -r FILE"); err != nil || helped {
		return err
	}
	if err := oneOf("output", *output, "text", "json"); err != nil {
		return err
	}
	if *duration <= 0 {
		return usageError{fmt.Sprintf("--duration must be positive, not %s", *duration)}
	}
	budget, err := parseMaxInflate(*maxInflate)
	if err != nil {
		return err
	}
	source := *read
	if source == "" {
		// Live: record to a temporary file for --duration, then diagnose that recording,
		// so live and recorded diagnoses are one code path. The file lives in a directory of
		// its own (mode 0700, made with a name nobody can guess), created by record itself:
		// nobody else can plant or read anything there. A signal (SIGHUP too) ends the watch
		// early and finishes the file; the directory goes either way.
		dir, err := os.MkdirTemp("", "sockscope-diagnose-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		// Until the directory is gone no signal may end the process: record stops on the first
		// one, and later ones (while the findings are made) are let pass.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(sigs)
		o := recorder.Options{File: filepath.Join(dir, "live.rec"), Stdout: io.Discard,
			Scope:    rf.spec(*queries, *netns),
			Duration: *duration, Interval: *interval, Syscalls: true}
		if o.Interval < recording.MinInterval {
			return usageError{fmt.Sprintf("--interval must be at least %s, not %s", recording.MinInterval, o.Interval)}
		}
		fmt.Fprintf(stderr, "sockscope: watching for %s before diagnosing\n", *duration)
		if err := runRecorder(o, stderr); err != nil {
			return err
		}
		source = o.File
		*queries, *netns = nil, nil // the recording holds only what was asked for
	}
	warn := io.Discard // a recording made just now says nothing new about its clock
	if *read != "" {
		warn = stderr
	}
	return replay(source, budget, *queries, *netns, warn, func(rec *recording.File, only map[uint32]bool) error {
		r, err := diagnose.Summarize(rec, source, only, 10)
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		return diagnose.PrintFindings(stdout, r.Findings, *output == "json")
	})
}
