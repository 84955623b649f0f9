package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockscope/sockscope/recording"
)

// 800 containers start and stop while the host and every container are recorded. Each is in the
// file's container history, stopped with its exit code, and the file stays small: the history is
// written as changes (one start, one exit each), not as the whole list at every change (19 MB
// for this churn before). Syscall counts are left out: they follow what every process on the
// host does (a busy CI machine's take megabytes a minute), not the churn.
func TestRecordingOf800ContainerCyclesStaysSmall(t *testing.T) {
	requireDocker(t)
	cycles := 800
	if testing.Short() {
		cycles = 50
	}
	rec, file := startRecord(t, "--syscalls=false")
	prefix := containerName("cycle")
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(cycles) {
					return
				}
				// A second of life: long enough to be listed as running, as a real container.
				name := fmt.Sprintf("%s-%d", prefix, i)
				if out, err := exec.Command("docker", "run", "--rm", "--name", name, testImage, "sleep", "1").CombinedOutput(); err != nil {
					if failed.Add(1) == 1 {
						t.Errorf("docker run %s: %v\n%s", name, err, out)
					}
				}
			}
		}()
	}
	wg.Wait()
	churn := time.Since(start)
	time.Sleep(time.Second) // the last exits
	stopRecord(t, rec)
	if failed.Load() > 0 {
		t.Fatalf("%d of %d cycles failed", failed.Load(), cycles)
	}

	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := recording.Open(f, st.Size(), recording.DefaultBudget)
	if err != nil {
		t.Fatal(err)
	}
	seen, exited := 0, 0
	for _, c := range r.Containers.Containers() {
		if strings.HasPrefix(c.Name, prefix+"-") {
			seen++
			if !c.Stopped.IsZero() && c.ExitCode == 0 {
				exited++
			}
		}
	}
	if seen != cycles || exited != cycles {
		t.Errorf("the history has %d of the %d containers, %d of them stopped with exit code 0", seen, cycles, exited)
	}
	const limit = 2 << 20
	t.Logf("%d cycles in %v: %d bytes, %d containers blocks (%d of changes), %d blocks in all",
		cycles, churn.Round(time.Second), st.Size(), r.Counts[recording.BlockContainers]+r.Counts[recording.BlockContainerChanges], r.Counts[recording.BlockContainerChanges], r.Blocks)
	if st.Size() >= limit {
		t.Errorf("the recording of %d cycles has %d bytes, want under %d", cycles, st.Size(), limit)
	}
	// The report of it, in little memory; its time is logged (a measurement, not a test: see
	// BenchmarkReportOf800ContainerCycles for the repeatable one).
	began := time.Now()
	out, rss := timed(t, "report", file)
	took := time.Since(began)
	if out.code != 0 || !strings.Contains(out.stdout, prefix) {
		t.Fatalf("report: exit %d\n%s", out.code, out.stderr)
	}
	t.Logf("report took %v and %d KiB peak RSS", took.Round(time.Millisecond), rss)
	if rss > 100<<10 {
		t.Errorf("report took %d KiB, want under 100 MiB", rss)
	}
}
