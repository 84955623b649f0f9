package syscalls

import (
	"bytes"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/containers"
	"github.com/sockscope/sockscope/events"
	ksyscalls "github.com/sockscope/sockscope/loader/syscalls"
)

type names map[uint32]string

func (n names) Lookup(inode uint32) (containers.Name, bool) {
	s, ok := n[inode]
	return containers.Name{Name: s, ID: "id-" + s}, ok
}

func nr(t *testing.T, name string) uint32 {
	t.Helper()
	n, ok := events.SyscallNumber(runtime.GOARCH, name)
	if !ok {
		t.Fatalf("no syscall %s on %s", name, runtime.GOARCH)
	}
	return n
}

// The incident of a process spinning on open/fsync/unlink: two reads of the kernel's counts, and
// each print holds exactly what was counted between them, grouped and ordered by count.
func TestEachPrintHoldsWhatWasCountedSinceTheLast(t *testing.T) {
	openat, fsync, unlink := nr(t, "openat"), nr(t, "fsync"), nr(t, "unlink")
	db := ksyscalls.Key{Netns: 1, Tgid: 100, Comm: "postgres"}
	web := ksyscalls.Key{Netns: 2, Tgid: 200, Comm: "nginx"}
	key := func(k ksyscalls.Key, nr uint32) ksyscalls.Key { k.Nr = nr; return k }
	first := ksyscalls.Snapshot{
		Counts: []ksyscalls.Count{
			{Key: key(db, fsync), Count: 10},
			{Key: key(db, openat), Count: 5, Errors: 1},
			{Key: key(web, openat), Count: 7},
		},
		Errors: []ksyscalls.Errors{{Key: key(db, openat), Errno: syscall.ENOENT, Count: 1}},
	}
	second := ksyscalls.Snapshot{
		Counts: []ksyscalls.Count{
			{Key: key(db, fsync), Count: 1010},
			{Key: key(db, openat), Count: 905, Errors: 401},
			{Key: key(db, unlink), Count: 300, Errors: 300},
			{Key: key(web, openat), Count: 7}, // nothing new: no row
		},
		Errors: []ksyscalls.Errors{
			{Key: key(db, openat), Errno: syscall.ENOENT, Count: 401},
			{Key: key(db, unlink), Errno: syscall.ENOENT, Count: 300},
		},
		Dropped: ksyscalls.Drops{ErrorsFull: 2},
	}
	var out, warn bytes.Buffer
	tb := NewTable(Options{By: []string{"container", "comm", "syscall"}, Errors: true, Top: 10}, names{1: "db", 2: "web"}, &out)
	if err := tb.Print(first, time.Now(), &warn); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := tb.Print(second, time.Now(), &warn); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"CONTAINER  COMM      SYSCALL  COUNT  ERRORS",
		"db         postgres  fsync    1000   0",
		"db         postgres  openat   900    400",
		"db         postgres  unlink   300    300",
		"",
		"failures:",
		"CONTAINER  COMM      SYSCALL  ERRNO   COUNT",
		"db         postgres  openat   ENOENT  400",
		"db         postgres  unlink   ENOENT  300",
		"",
	}, "\n")
	if out.String() != want {
		t.Errorf("second print:\n%s\nwant:\n%s", out.String(), want)
	}
	if w := "sockscope: warning: 2 errno counts did not fit the kernel's table and were not counted\n"; warn.String() != w {
		t.Errorf("warnings %q, want %q", warn.String(), w)
	}
}

// JSON lines carry the same rows, with the container's ID, and only the fields grouped by; the
// filters keep only the commands and syscalls asked for, and --top cuts each table.
func TestJSONRowsFollowTheGroupingAndFilters(t *testing.T) {
	openat, fsync := nr(t, "openat"), nr(t, "fsync")
	snap := ksyscalls.Snapshot{Counts: []ksyscalls.Count{
		{Key: ksyscalls.Key{Netns: 1, Tgid: 100, Comm: "postgres", Nr: fsync}, Count: 3, LatTotal: 3 * time.Millisecond, LatMax: 2 * time.Millisecond},
		{Key: ksyscalls.Key{Netns: 1, Tgid: 101, Comm: "postgres", Nr: fsync}, Count: 2, LatTotal: time.Millisecond, LatMax: time.Millisecond},
		{Key: ksyscalls.Key{Netns: 1, Tgid: 100, Comm: "postgres", Nr: openat}, Count: 50},
		{Key: ksyscalls.Key{Netns: 9, Tgid: 300, Comm: "nginx", Nr: fsync}, Count: 70},
	}}
	row := `{"container":"db","container_id":"id-db","count":3,"errors":0,"k8s_namespace":"","k8s_pod":"","latency_avg_us":1000,"latency_max_us":2000,"netns":1,"pid":100,"syscall":"fsync","type":"syscall"}` + "\n"
	for _, tc := range []struct {
		top  int
		want string
	}{
		{1, row},
		{5, row + `{"container":"db","container_id":"id-db","count":2,"errors":0,"k8s_namespace":"","k8s_pod":"","latency_avg_us":500,"latency_max_us":1000,"netns":1,"pid":101,"syscall":"fsync","type":"syscall"}` + "\n"},
	} {
		var out bytes.Buffer
		o := Options{By: []string{"container", "pid", "syscall"}, Comms: []string{"postgres"}, Syscalls: []string{"fsync"}, Latency: true, Top: tc.top, JSON: true}
		if err := NewTable(o, names{1: "db"}, &out).Print(snap, time.Now(), &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want {
			t.Errorf("--top %d:\n%s\nwant\n%s", tc.top, out.String(), tc.want)
		}
	}
}

// --paths adds the paths table, --interval the time of each print; a namespace without a name
// shows its inode.
func TestPathsAndTheTimeOfAnIntervalPrint(t *testing.T) {
	openat := nr(t, "openat")
	k := ksyscalls.Key{Netns: 7, Tgid: 100, Comm: "php", Nr: openat}
	snap := ksyscalls.Snapshot{
		Counts: []ksyscalls.Count{{Key: k, Count: 30}},
		Paths:  []ksyscalls.PathCount{{Key: k, Path: "/tmp/sess_1", Count: 20}, {Key: k, Path: "/etc/hosts", Count: 10}},
	}
	at := time.Date(2026, 12, 1, 13, 4, 5, 0, time.Local)
	var out bytes.Buffer
	o := Options{By: []string{"container", "comm"}, Paths: true, Interval: time.Second, Top: 10}
	if err := NewTable(o, names{}, &out).Print(snap, at, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"13:04:05",
		"CONTAINER  COMM  COUNT  ERRORS",
		"7          php   30     0",
		"",
		"paths:",
		"CONTAINER  COMM  COUNT  PATH",
		"7          php   20     /tmp/sess_1",
		"7          php   10     /etc/hosts",
		"",
	}, "\n")
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}
