package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// One scope for every command: --netns takes an inode or a path in trace, sockets, syscalls,
// record and diagnose alike, and export's --netns NAME=INODE or NAME=PATH; each gives exactly the
// traffic and the work done in that namespace. (An inode is entered through the file ip netns
// pinned, or a process in the namespace.)
func TestNetnsTakesAnInodeOrAPathInEveryCommand(t *testing.T) {
	requireTracing(t)
	const n, fsyncs = 8, 50
	ns := newNetns(t)
	inode := strconv.FormatUint(uint64(ns.inode), 10)
	forms := map[string]string{"inode": inode, "path": ns.path}

	traces := map[string]*tracer{}
	counts := map[string]*tracer{}
	records := map[string]string{}
	var recorders []*tracer
	exports := map[string]*exportProc{}
	for form, arg := range forms {
		traces[form] = startTrace(t, "--netns", arg)
		counts[form] = startSyscalls(t, "--netns", arg, "--syscall", "fsync")
		rec, file := startRecord(t, "--netns", arg)
		recorders, records[form] = append(recorders, rec), file
		exports[form] = startExport(t, noDocker, "--host=false", "--netns", "t="+arg)
	}
	// Traffic and work outside the namespace at the same time must not count.
	other := newNetns(t)
	otherSrv := other.serve(t, "-addr", "127.0.0.1:8080")
	other.tcpload(t, "connect", "-addr", "127.0.0.1:8080", "-n", "5")
	srv := ns.serve(t, "-addr", "127.0.0.1:8080")
	client := ns.tcpload(t, "connect", "-addr", "127.0.0.1:8080", "-n", strconv.Itoa(n))
	out := sh(t, "ip", "netns", "exec", ns.name, sysloadBin, "-dir", filepath.Join(t.TempDir(), "w"), "-fsync", strconv.Itoa(fsyncs))
	var load sysloadResult
	json.Unmarshal([]byte(lastLine(out)), &load)
	srv.stop(t)
	otherSrv.stop(t)

	for form := range forms {
		evs, _ := traces[form].stop(t)
		for _, e := range evs {
			if e.Netns != ns.inode {
				t.Fatalf("trace --netns (%s): event from elsewhere: %+v", form, e)
			}
		}
		assertCounts(t, "trace --netns ("+form+") connects by tcpload", connects(evs, func(e jsonEvent) bool { return e.Pid == client.Pid }), map[string]int{"": n})

		var fsynced uint64
		for _, r := range syscallRows(t, counts[form]) {
			if r.Netns != ns.inode {
				t.Fatalf("syscalls --netns (%s): counted elsewhere: %+v", form, r)
			}
			if r.Pid == load.Pid && r.Syscall == "fsync" {
				fsynced += r.Count
			}
		}
		if fsynced != fsyncs {
			t.Errorf("syscalls --netns (%s): %d fsync by sysload, want %d", form, fsynced, fsyncs)
		}

		m := exports[form].metrics(t)
		if got := value(m, `sockscope_tcp_connects_total{container="t",namespace="",pod="",result="success"}`); got != n {
			t.Errorf("export --netns t=%s (%s): %v successful connects, want %d", forms[form], form, got, n)
		}
		exports[form].stop(t)
	}
	for _, rec := range recorders {
		stopRecord(t, rec)
	}
	for form, file := range records {
		replay := jsonLines[jsonEvent](t, runSockscope(t, "trace", "-r", file, "-o", "json").stdout)
		assertCounts(t, "record --netns ("+form+") connects by tcpload", connects(replay, func(e jsonEvent) bool { return e.Pid == client.Pid }), map[string]int{"": n})
		for _, e := range replay {
			if e.Netns != ns.inode {
				t.Fatalf("record --netns (%s): event from elsewhere: %+v", form, e)
			}
		}
	}

	// sockets lists the namespace's TIME_WAIT sockets, as ss does, whichever form names it.
	want := ssTuples(t, ns)
	for form, arg := range forms {
		socks := listSockets(t, "--netns", arg)
		if got := tuples(socks); !slices.Equal(got, want) || len(got) == 0 {
			t.Errorf("sockets --netns (%s):\n%s\nss:\n%s", form, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, s := range socks {
			if s.Container != ns.name || s.Netns != ns.inode {
				t.Errorf("sockets --netns (%s): not named %s: %+v", form, ns.name, s)
			}
		}
	}
	// diagnose, live, watches the namespace whichever form names it.
	for form, arg := range forms {
		r := runCmd(t, 60*time.Second, exec.Command(sockscopeBin, "diagnose", "--netns", arg, "--duration", "1s", "--interval", "200ms", "-o", "json"))
		if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("recording netns %s", ns.name)) {
			t.Errorf("diagnose --netns (%s): exit %d\n%s", form, r.code, r.stderr)
		}
	}
}
