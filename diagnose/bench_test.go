package diagnose

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/sockscope/sockscope/recording"
)

// churnFile is what record writes for 800 containers that start, live a second and exit, 16 at
// a time, over 74 s at a 500 ms interval (as TestRecordingOf800ContainerCyclesStaysSmall makes
// them): each start and exit a changes block, and every interval a snapshot of the host and of
// each running container, the facts (200 processes) and the lost counts. fullLists writes the
// history as record did before version 2: the whole list at every change.
func churnFile(tb testing.TB, fullLists bool) []byte {
	var buf bytes.Buffer
	w, err := recording.NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	const cycles, parallel, interval = 800, 16, 500 * time.Millisecond
	write := func(t recording.BlockType, at time.Time, v any) {
		b, ok := v.([]byte)
		if !ok {
			b, _ = json.Marshal(v)
		}
		if err := w.WriteBlock(t, at.UnixNano(), b); err != nil {
			tb.Fatal(err)
		}
	}
	const host = 4026531840
	write(recording.BlockMeta, t0, recording.Meta{Start: t0, Interval: interval, HostNetns: host, Hostname: "ci", Scope: "the host and every container"})
	write(recording.BlockContainers, t0, recording.Containers{List: []recording.Container{}})
	var all []recording.Container
	facts := recording.Facts{Netns: []recording.NetnsFacts{{Netns: host, PortRange: [2]int{32768, 60999}}}}
	for pid := range 200 {
		facts.Processes = append(facts.Processes, recording.Process{Pid: uint32(1000 + pid), Netns: host, Comm: fmt.Sprintf("proc-%d", pid), NofileSoft: 1024, NofileHard: 524288, Fds: 12})
	}
	change := func(at time.Time, c recording.Container) {
		for i := range all {
			if all[i].ID == c.ID {
				all[i] = c
			}
		}
		if fullLists {
			write(recording.BlockContainers, at, recording.Containers{List: all})
		} else {
			write(recording.BlockContainerChanges, at, recording.Containers{List: []recording.Container{c}})
		}
	}
	at := t0
	next := 0
	for next < cycles {
		// A wave of 16 containers: they start, are snapshotted twice, and exit.
		var wave []recording.Container
		for i := 0; i < parallel && next < cycles; i++ {
			c := recording.Container{ID: fmt.Sprintf("%064x", next+1), Name: fmt.Sprintf("sockscope-test-cycle-%d", next), Image: "sockscope-test/busybox",
				Pid: 20000 + next, Netns: uint32(4026532300 + next%64), Runtime: "docker", Started: at}
			all = append(all, c)
			change(at, c)
			wave = append(wave, c)
			next++
		}
		for range 3 {
			at = at.Add(interval)
			write(recording.BlockSockets, at, recording.EncodeSockets(&recording.SocketSnapshot{Netns: host, PortRange: [2]int{32768, 60999}}))
			for _, c := range wave {
				write(recording.BlockSockets, at, recording.EncodeSockets(&recording.SocketSnapshot{Netns: c.Netns, PortRange: [2]int{32768, 60999}}))
			}
			write(recording.BlockFacts, at, facts)
			write(recording.BlockLost, at, recording.Lost{})
		}
		for _, c := range wave {
			c.Stopped = at
			change(at, c)
		}
	}
	write(recording.BlockEnd, at, recording.End{Reason: "signal"})
	return buf.Bytes()
}

func benchmarkReport(b *testing.B, fullLists bool) {
	data := churnFile(b, fullLists)
	for b.Loop() {
		f, err := recording.Open(bytes.NewReader(data), int64(len(data)), recording.DefaultBudget)
		if err != nil {
			b.Fatal(err)
		}
		r, err := Summarize(f, "churn", nil, 10)
		if err != nil {
			b.Fatal(err)
		}
		if err := WriteText(&bytes.Buffer{}, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data)), "file-bytes")
}

// The report of 800 container cycles (record's version 2 file): go test ./diagnose -bench Report
func BenchmarkReportOf800ContainerCycles(b *testing.B) { benchmarkReport(b, false) }

// The same history written as full lists, as record wrote it before version 2 (19 MB).
func BenchmarkReportOf800ContainerCyclesAsFullLists(b *testing.B) { benchmarkReport(b, true) }
