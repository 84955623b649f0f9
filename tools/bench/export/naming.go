package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/sockscope/sockscope/internal/critest"
	"github.com/sockscope/sockscope/tools/bench/internal/benchkit"
)

// namingPhase measures how sockscope names pods on a containerd node: the time from a pod's start
// to its name in the exposition, and what following the runtime costs under pod churn, against an
// exporter that names nothing (--runtime-endpoint none) running through the same phases.
type namingPhase struct {
	endpoint string
	runtime  string
	events   bool // the runtime streams CRI events that sockscope follows

	latencies []float64 // ms, pod ready (RunPodSandbox returned) to its container_info row

	idle, churn         time.Duration
	idleCPU, churnCPU   [2]float64 // seconds: [naming, none]
	idleSyncs, churnSyn float64    // sockscope_runtime_syncs_total deltas of the naming exporter
	pods                int
	rssBefore, rssAfter [2]int64 // KB
	namedAll            bool     // every churn pod showed up (checked once all were running)
	warnings            []string
}

// criRunner creates and removes pods as a kubelet would, through CRI.
type criRunner struct {
	rs      cri.RuntimeServiceClient
	imageID string
	logRoot string
}

func newCRIRunner(endpoint string) (*criRunner, *grpc.ClientConn, string, error) {
	conn, err := grpc.NewClient("unix://"+endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &criRunner{rs: cri.NewRuntimeServiceClient(conn)}
	v, err := r.rs.Version(ctx, &cri.VersionRequest{})
	if err != nil {
		conn.Close()
		return nil, nil, "", fmt.Errorf("CRI runtime at %s: %v (start one with: bash .ci/cri.sh)", endpoint, err)
	}
	img, err := cri.NewImageServiceClient(conn).ImageStatus(ctx, &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: critest.Image}})
	if err != nil || img.Image == nil {
		conn.Close()
		return nil, nil, "", fmt.Errorf("image %s is not in the CRI runtime (bash .ci/cri.sh imports it): %v", critest.Image, err)
	}
	r.imageID = img.Image.Id
	if r.logRoot, err = os.MkdirTemp("", "namingbench-logs"); err != nil {
		conn.Close()
		return nil, nil, "", err
	}
	benchkit.AtExit(func() { os.RemoveAll(r.logRoot) })
	return r, conn, v.RuntimeName + " " + v.RuntimeVersion, nil
}

// start runs a pod with one sleeping container and returns the sandbox ID.
func (r *criRunner) start(ns, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	uid := critest.NewUID()
	logDir := filepath.Join(r.logRoot, ns+"_"+name+"_"+uid)
	if err := os.MkdirAll(filepath.Join(logDir, "app"), 0o755); err != nil {
		return "", err
	}
	cfg := critest.SandboxConfig(ns, name, uid, logDir, critest.PodOptions{})
	sb, err := r.rs.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return "", fmt.Errorf("RunPodSandbox %s/%s: %w", ns, name, err)
	}
	benchkit.AtExit(func() { r.remove(sb.PodSandboxId) })
	ct, err := r.rs.CreateContainer(ctx, &cri.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, SandboxConfig: cfg,
		Config: critest.NewContainerConfig(cfg, "app", r.imageID, critest.Image)})
	if err != nil {
		return sb.PodSandboxId, fmt.Errorf("CreateContainer in %s/%s: %w", ns, name, err)
	}
	if _, err := r.rs.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: ct.ContainerId}); err != nil {
		return sb.PodSandboxId, fmt.Errorf("StartContainer in %s/%s: %w", ns, name, err)
	}
	return sb.PodSandboxId, nil
}

func (r *criRunner) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.rs.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: id})
	r.rs.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: id})
}

func (b *bench) runNaming() (*namingPhase, error) {
	c := b.cfg
	p := &namingPhase{endpoint: c.criEndpoint, pods: c.namingPods, idle: c.namingIdle}
	r, conn, rt, err := newCRIRunner(c.criEndpoint)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	p.runtime = rt
	// The same rule as containers.eventsSafe: containerd 2 and later stream events sockscope follows.
	p.events = strings.HasPrefix(rt, "containerd 2") || strings.HasPrefix(rt, "containerd v2")
	naming, err := startExporter(c.sockscope, "--runtime-endpoint", "unix://"+c.criEndpoint, "--host=false")
	if err != nil {
		return nil, err
	}
	defer naming.abort()
	none, err := startExporter(c.sockscope, "--runtime-endpoint", "none", "--host=false")
	if err != nil {
		return nil, err
	}
	defer none.abort()
	exps := [2]*exporter{naming, none}
	ns := "bench-" + b.runID

	// 1. Latency: one pod at a time, the exposition polled every 10 ms from the moment the
	// runtime says the pod is ready.
	benchkit.Logf("naming: latency of %d pods", c.namingLatency)
	for i := 0; i < c.namingLatency; i++ {
		// A random pause first: without it the loop locks to the runtime poll's phase and
		// measures one point of the poll interval over and over.
		time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
		name := fmt.Sprintf("lat-%d", i)
		id, err := r.start(ns, name)
		ready := time.Now()
		if err != nil {
			return nil, err
		}
		for {
			s, err := naming.scrape()
			if err != nil {
				return nil, err
			}
			if _, ok := s.M.sum("sockscope_container_info", "namespace", ns, "pod", name); ok {
				p.latencies = append(p.latencies, benchkit.Millis(time.Since(ready)))
				break
			}
			if time.Since(ready) > 10*time.Second {
				return nil, fmt.Errorf("pod %s/%s not named 10 s after it was ready", ns, name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		r.remove(id)
	}
	time.Sleep(3 * time.Second) // the removals settle

	// 2. Idle: what following costs when nothing changes (the poll, with or without events).
	measure := func(d time.Duration, work func() error) (cpu [2]float64, syncs float64, err error) {
		var before [2]float64
		for i, e := range exps {
			if before[i], err = e.cpu(); err != nil {
				return cpu, 0, err
			}
		}
		s0, err := naming.scrape()
		if err != nil {
			return cpu, 0, err
		}
		start := time.Now()
		if err := work(); err != nil {
			return cpu, 0, err
		}
		if rest := d - time.Since(start); rest > 0 {
			time.Sleep(rest)
		}
		for i, e := range exps {
			after, err := e.cpu()
			if err != nil {
				return cpu, 0, err
			}
			cpu[i] = after - before[i]
		}
		s1, err := naming.scrape()
		if err != nil {
			return cpu, 0, err
		}
		return cpu, s1.M.value("sockscope_runtime_syncs_total") - s0.M.value("sockscope_runtime_syncs_total"), nil
	}
	benchkit.Logf("naming: %v idle", c.namingIdle)
	if p.idleCPU, p.idleSyncs, err = measure(c.namingIdle, func() error { return nil }); err != nil {
		return nil, err
	}
	for i, e := range exps {
		st, err := e.status()
		if err != nil {
			return nil, err
		}
		p.rssBefore[i] = st.RSSKB
	}

	// 3. Churn: the pods created four at a time, then removed four at a time, unscraped.
	benchkit.Logf("naming: churn of %d pods", c.namingPods)
	churnStart := time.Now()
	p.churnCPU, p.churnSyn, err = measure(0, func() error {
		ids := make([]string, c.namingPods)
		if err := parallel(c.namingPods, 4, func(i int) error {
			var err error
			ids[i], err = r.start(ns, fmt.Sprintf("churn-%d", i))
			return err
		}); err != nil {
			return err
		}
		time.Sleep(2 * time.Second) // named, the next poll at the latest
		s, err := naming.scrape()
		if err != nil {
			return err
		}
		p.namedAll = len(s.M.byLabel("sockscope_container_info", "pod")) >= c.namingPods
		if err := parallel(c.namingPods, 4, func(i int) error { r.remove(ids[i]); return nil }); err != nil {
			return err
		}
		time.Sleep(3 * time.Second) // the removals seen
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.churn = time.Since(churnStart)
	for i, e := range exps {
		st, err := e.status()
		if err != nil {
			return nil, err
		}
		p.rssAfter[i] = st.RSSKB
		p.warnings = append(p.warnings, e.warnings()...)
	}
	for _, e := range exps {
		if err := e.stop(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (b *bench) reportNaming(p func(string, ...any), s *namingPhase) {
	p("#### 4. Naming pods on a containerd node (%s, CRI at %s)\n\n", s.runtime, s.endpoint)
	lo, hi := benchkit.MinMax(s.latencies)
	how := "This runtime has no CRI event stream sockscope follows, so the exporter polls it once a second"
	if s.events {
		how = "This runtime streams CRI events; each burst of them makes the exporter list the runtime at once (the once-a-second poll remains, as a resync)"
	}
	p("Time from a pod's sandbox being ready (RunPodSandbox returned) to its `sockscope_container_info` row in the exposition, %d pods one at a time: **median %.0f ms** (min %.0f, max %.0f). %s. `trace` and `record` do not wait for either: the first event from an unnamed namespace asks the runtime at once (see the pod tests).\n\n",
		len(s.latencies), benchkit.Median(s.latencies), lo, hi, how)
	perSec := func(cpu float64, d time.Duration) float64 { return cpu / d.Seconds() * 1000 }
	p("| | exporter naming through CRI | exporter naming nothing | difference |\n|---|---|---|---|\n")
	p("| CPU while idle, %v (ms per second) | %.2f | %.2f | %+.2f |\n", s.idle, perSec(s.idleCPU[0], s.idle), perSec(s.idleCPU[1], s.idle), perSec(s.idleCPU[0]-s.idleCPU[1], s.idle))
	p("| CPU during the churn of %d pods, %v (ms) | %.0f | %.0f | %+.0f |\n", s.pods, s.churn.Round(time.Second), s.churnCPU[0]*1000, s.churnCPU[1]*1000, (s.churnCPU[0]-s.churnCPU[1])*1000)
	p("| RSS before the churn (MB) | %.1f | %.1f | |\n", benchkit.RSSMB(s.rssBefore[0]), benchkit.RSSMB(s.rssBefore[1]))
	p("| RSS after the churn (MB) | %.1f | %.1f | |\n", benchkit.RSSMB(s.rssAfter[0]), benchkit.RSSMB(s.rssAfter[1]))
	p("| RSS after / before | %.2fx | %.2fx | |\n\n", float64(s.rssAfter[0])/float64(s.rssBefore[0]), float64(s.rssAfter[1])/float64(s.rssBefore[1]))
	extra := (s.churnCPU[0] - s.churnCPU[1]) - (s.idleCPU[0]-s.idleCPU[1])/s.idle.Seconds()*s.churn.Seconds()
	per := 0.0
	if s.churnSyn > 0 {
		per = extra / s.churnSyn * 1000
	}
	p("The churn made the naming exporter list the runtime's pods again %.0f times (`sockscope_runtime_syncs_total`; %.0f while idle): **%.2f ms of exporter CPU per resync**, after taking out the idle polling cost and what the exporter that names nothing spent in the same time. Every churn pod was named: %v.\n\n",
		s.churnSyn, s.idleSyncs, per, s.namedAll)
}
