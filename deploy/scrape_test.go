package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/sockscope/sockscope/internal/testenv"
)

// ---------------------------------------------------------------------------------------------
// The Prometheus Operator's PodMonitor

// podMonitor is the part of a monitoring.coreos.com/v1 PodMonitor that podmonitor.yaml uses,
// spelt as the operator's CRD spells it. The operator's Go module is no dependency (it brings
// controller-runtime and apiextensions-apiserver); decoding strictly into these fields still
// rejects a misspelt or misplaced key. No omitempty: a field set to its zero value must come
// back when decodeStrict encodes the object again.
type podMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		PodMetricsEndpoints []podMetricsEndpoint `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type podMetricsEndpoint struct {
	Port              string          `json:"port"`
	Path              string          `json:"path"`
	Interval          string          `json:"interval"`
	ScrapeTimeout     string          `json:"scrapeTimeout"`
	HonorLabels       bool            `json:"honorLabels"`
	Relabelings       []relabelConfig `json:"relabelings"`
	MetricRelabelings []relabelConfig `json:"metricRelabelings"`
}

type relabelConfig struct {
	SourceLabels []string `json:"sourceLabels"`
	Separator    *string  `json:"separator"`
	TargetLabel  string   `json:"targetLabel"`
	Regex        string   `json:"regex"`
	Modulus      int64    `json:"modulus"`
	Replacement  *string  `json:"replacement"`
	Action       string   `json:"action"`
}

// prometheus writes the relabeling as Prometheus's configuration spells it.
func (r relabelConfig) prometheus() map[string]any {
	m := map[string]any{}
	if len(r.SourceLabels) > 0 {
		m["source_labels"] = r.SourceLabels
	}
	if r.Separator != nil {
		m["separator"] = *r.Separator
	}
	if r.TargetLabel != "" {
		m["target_label"] = r.TargetLabel
	}
	if r.Regex != "" {
		m["regex"] = r.Regex
	}
	if r.Modulus != 0 {
		m["modulus"] = r.Modulus
	}
	if r.Replacement != nil {
		m["replacement"] = *r.Replacement
	}
	if r.Action != "" {
		m["action"] = strings.ToLower(r.Action)
	}
	return m
}

func loadPodMonitor(t *testing.T) *podMonitor {
	t.Helper()
	var pm podMonitor
	decodeStrict(t, PodMonitor, &pm)
	return &pm
}

// The PodMonitor selects the DaemonSet's pods and port as scrape.yml does, every 15 s, keeps the
// exporter's labels and drops the target's that would collide with them.
func TestPodMonitor(t *testing.T) {
	pm := loadPodMonitor(t)
	ds := loadDaemonSet(t)
	if pm.APIVersion != "monitoring.coreos.com/v1" || pm.Kind != "PodMonitor" {
		t.Errorf("apiVersion/kind = %s/%s, want monitoring.coreos.com/v1/PodMonitor", pm.APIVersion, pm.Kind)
	}
	if pm.Metadata.Namespace != ds.Namespace || !slices.Equal(pm.Spec.NamespaceSelector.MatchNames, []string{ds.Namespace}) {
		t.Errorf("PodMonitor in %s looking in %v, want both the DaemonSet's namespace %s", pm.Metadata.Namespace, pm.Spec.NamespaceSelector.MatchNames, ds.Namespace)
	}
	if len(pm.Spec.Selector.MatchLabels) == 0 {
		t.Error("the selector selects every pod of the namespace")
	}
	for k, v := range pm.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the DaemonSet's pods (%v)", k, v, ds.Spec.Template.Labels)
		}
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("%d endpoints, want 1", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	c := ds.Spec.Template.Spec.Containers[0]
	if ep.Port != c.Ports[0].Name {
		t.Errorf("port %q, want the container's port name %q", ep.Port, c.Ports[0].Name)
	}
	if !slices.Contains(c.Args, "--web.telemetry-path="+ep.Path) {
		t.Errorf("path %q is not the exporter's --web.telemetry-path (args %q)", ep.Path, c.Args)
	}
	if ep.Interval != "15s" || ep.ScrapeTimeout != "10s" {
		t.Errorf("interval %q, scrapeTimeout %q, want 15s and 10s like scrape.yml", ep.Interval, ep.ScrapeTimeout)
	}
	if !ep.HonorLabels {
		t.Error("honorLabels must be true: the exporter's namespace, pod and container would become exported_*")
	}
	var dropped []string
	for _, r := range ep.Relabelings {
		if strings.ToLower(r.Action) != "labeldrop" {
			continue
		}
		re := regexp.MustCompile("^(?:" + r.Regex + ")$")
		for _, l := range []string{"namespace", "pod", "container", "endpoint", "instance", "job", "node"} {
			if re.MatchString(l) {
				dropped = append(dropped, l)
			}
		}
	}
	if want := []string{"namespace", "pod", "container", "endpoint"}; !slices.Equal(dropped, want) {
		t.Errorf("relabelings drop the target labels %v, want exactly %v", dropped, want)
	}
}

// operatorScrapeJob is the scrape job prometheus-operator writes for a PodMonitor endpoint
// (generatePodMonitorConfig in its pkg/prometheus/promcfg.go), for the fields podmonitor.yaml
// uses: it keeps running pods that match the selector and the port, labels the target with
// namespace, container, pod, job and endpoint, and then applies the endpoint's relabelings.
// Kubernetes discovery is left out, for the caller to provide.
func operatorScrapeJob(pm *podMonitor, i int) map[string]any {
	ep := pm.Spec.PodMetricsEndpoints[i]
	rc := []map[string]any{
		{"source_labels": []string{"job"}, "target_label": "__tmp_prometheus_job_name"},
		{"action": "drop", "source_labels": []string{"__meta_kubernetes_pod_phase"}, "regex": "(Failed|Succeeded)"},
	}
	for _, k := range slices.Sorted(maps.Keys(pm.Spec.Selector.MatchLabels)) {
		rc = append(rc, map[string]any{"action": "keep",
			"source_labels": []string{"__meta_kubernetes_pod_label_" + sanitize(k), "__meta_kubernetes_pod_labelpresent_" + sanitize(k)},
			"regex":         "(" + pm.Spec.Selector.MatchLabels[k] + ");true"})
	}
	rc = append(rc,
		map[string]any{"action": "keep", "source_labels": []string{"__meta_kubernetes_pod_container_port_name"}, "regex": ep.Port},
		map[string]any{"source_labels": []string{"__meta_kubernetes_namespace"}, "target_label": "namespace"},
		map[string]any{"source_labels": []string{"__meta_kubernetes_pod_container_name"}, "target_label": "container"},
		map[string]any{"source_labels": []string{"__meta_kubernetes_pod_name"}, "target_label": "pod"},
		map[string]any{"target_label": "job", "replacement": pm.Metadata.Namespace + "/" + pm.Metadata.Name},
		map[string]any{"target_label": "endpoint", "replacement": ep.Port},
	)
	for _, r := range ep.Relabelings {
		rc = append(rc, r.prometheus())
	}
	job := map[string]any{
		"job_name":        fmt.Sprintf("podMonitor/%s/%s/%d", pm.Metadata.Namespace, pm.Metadata.Name, i),
		"honor_labels":    ep.HonorLabels,
		"scrape_interval": ep.Interval,
		"scrape_timeout":  ep.ScrapeTimeout,
		"metrics_path":    ep.Path,
		"relabel_configs": rc,
	}
	if len(ep.MetricRelabelings) > 0 {
		var mrc []map[string]any
		for _, r := range ep.MetricRelabelings {
			mrc = append(mrc, r.prometheus())
		}
		job["metric_relabel_configs"] = mrc
	}
	return job
}

var invalidLabelChar = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// sanitize turns a Kubernetes label or annotation name into the part of a __meta_ label name
// that discovery makes of it.
func sanitize(name string) string { return invalidLabelChar.ReplaceAllString(name, "_") }

// podDiscoveryLabels are the labels Kubernetes pod discovery gives the target of the DaemonSet's
// metrics port on node-1.
func podDiscoveryLabels(t *testing.T, ds *appsv1.DaemonSet) map[string]string {
	t.Helper()
	pod := ds.Spec.Template
	c := pod.Spec.Containers[0]
	if len(c.Ports) == 0 {
		t.Fatal("the container declares no port")
	}
	meta := map[string]string{
		"__meta_kubernetes_namespace":                 ds.Namespace,
		"__meta_kubernetes_pod_name":                  ds.Name + "-x7k2p",
		"__meta_kubernetes_pod_node_name":             "node-1",
		"__meta_kubernetes_pod_phase":                 "Running",
		"__meta_kubernetes_pod_ready":                 "true",
		"__meta_kubernetes_pod_container_name":        c.Name,
		"__meta_kubernetes_pod_container_port_name":   c.Ports[0].Name,
		"__meta_kubernetes_pod_container_port_number": fmt.Sprint(c.Ports[0].ContainerPort),
		"__meta_kubernetes_pod_container_init":        "false",
	}
	for k, v := range pod.Labels {
		meta["__meta_kubernetes_pod_label_"+sanitize(k)] = v
		meta["__meta_kubernetes_pod_labelpresent_"+sanitize(k)] = "true"
	}
	for k, v := range pod.Annotations {
		meta["__meta_kubernetes_pod_annotation_"+sanitize(k)] = v
		meta["__meta_kubernetes_pod_annotationpresent_"+sanitize(k)] = "true"
	}
	return meta
}

// ---------------------------------------------------------------------------------------------
// What Prometheus makes of the exporter's labels

// A node's exporter as Kubernetes sees it: a hostNetwork pod in monitoring, whose series name
// other pods (namespace, pod, container), the node itself (container="host", namespace and pod
// empty), and runtimes (endpoint). Both ways of scraping it on Kubernetes, scrape.yml's job and
// the job the operator makes of podmonitor.yaml, run in a real Prometheus, their own relabeling
// included. Pod discovery is replaced by a static target with the __meta_ labels it would give
// the DaemonSet's pod: Debian's Prometheus has no Kubernetes discovery, and there is no API
// server here. Every series keeps exactly the exporter's labels plus job, instance and node:
// nothing renamed exported_*, and no series takes the exporter pod's namespace or pod.
func TestKubernetesScrapeKeepsTheExportersLabels(t *testing.T) {
	bin := testenv.Command(t, "prometheus")
	ds := loadDaemonSet(t)
	meta := podDiscoveryLabels(t, ds)

	// The exposition, written by client_golang as the exporter writes it: empty label values
	// included.
	var exposed fixedMetrics
	gauge := func(name string, labels []string, values ...string) {
		exposed = append(exposed, prometheus.MustNewConstMetric(
			prometheus.NewDesc(name, "test", labels, nil), prometheus.GaugeValue, 1, values...))
	}
	ns := []string{"container", "namespace", "pod"}
	gauge("sockscope_tcp_ephemeral_ports", ns, "host", "", "")
	gauge("sockscope_tcp_ephemeral_ports", ns, "shop/web-0", "shop", "web-0")
	gauge("sockscope_container_info", append(ns, "container_name", "runtime", "host_network"), "shop/web-0", "shop", "web-0", "web", "containerd", "false")
	gauge("sockscope_runtime_up", []string{"runtime", "endpoint"}, "containerd", "unix:///host/run/containerd/containerd.sock")
	gauge("sockscope_build_info", []string{"version", "goversion"}, "test", "go")
	reg := prometheus.NewRegistry()
	reg.MustRegister(exposed)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	defer srv.Close()
	target := strings.TrimPrefix(srv.URL, "http://")

	var sf scrapeFile
	if err := yaml.Unmarshal(read(t, ScrapeConfig), &sf); err != nil {
		t.Fatal(err)
	}
	var k8sJob map[string]any
	for _, j := range sf.ScrapeConfigs {
		if _, ok := j["kubernetes_sd_configs"]; ok {
			k8sJob = j
		}
	}
	if k8sJob == nil {
		t.Fatal("scrape.yml has no kubernetes_sd_configs job")
	}
	pm := loadPodMonitor(t)
	jobs := []struct {
		cfg      map[string]any
		jobLabel string // the job label its series get
	}{
		{k8sJob, fmt.Sprint(k8sJob["job_name"])},
		{operatorScrapeJob(pm, 0), pm.Metadata.Namespace + "/" + pm.Metadata.Name},
	}
	var cfgs []any
	for _, j := range jobs {
		c := maps.Clone(j.cfg)
		delete(c, "kubernetes_sd_configs")
		c["static_configs"] = []any{map[string]any{"targets": []string{target}, "labels": meta}}
		// Every second, so that the test does not wait for 15 s intervals.
		c["scrape_interval"], c["scrape_timeout"] = "1s", "900ms"
		if c["metrics_path"] != "/metrics" {
			t.Errorf("job %v scrapes %v, want /metrics", c["job_name"], c["metrics_path"])
		}
		cfgs = append(cfgs, c)
	}
	cfg, err := yaml.Marshal(map[string]any{"scrape_configs": cfgs})
	if err != nil {
		t.Fatal(err)
	}
	prom := startPrometheus(t, bin, cfg)

	// Series as name{labels}, labels sorted, job left out.
	want := []string{
		`sockscope_build_info{goversion="go",instance="node-1",node="node-1",version="test"}`,
		`sockscope_container_info{container="shop/web-0",container_name="web",host_network="false",instance="node-1",namespace="shop",node="node-1",pod="web-0",runtime="containerd"}`,
		`sockscope_runtime_up{endpoint="unix:///host/run/containerd/containerd.sock",instance="node-1",node="node-1",runtime="containerd"}`,
		`sockscope_tcp_ephemeral_ports{container="host",instance="node-1",node="node-1"}`,
		`sockscope_tcp_ephemeral_ports{container="shop/web-0",instance="node-1",namespace="shop",node="node-1",pod="web-0"}`,
	}
	for _, j := range jobs {
		q := fmt.Sprintf(`{__name__=~"sockscope_.+", job=%q}`, j.jobLabel)
		got := prom.waitForSeries(t, q, len(want))
		if !slices.Equal(got, want) {
			t.Errorf("job %v (series job=%q): got\n\t%s\nwant\n\t%s", j.cfg["job_name"], j.jobLabel, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	}
}

// fixedMetrics serves the same metrics at every scrape. Like the exporter's collector it
// describes nothing, so one metric name may come with several label sets.
type fixedMetrics []prometheus.Metric

func (fixedMetrics) Describe(chan<- *prometheus.Desc) {}

func (f fixedMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, m := range f {
		ch <- m
	}
}

// promServer is a Prometheus server started for one test.
type promServer struct{ url string }

// startPrometheus runs Prometheus with the configuration cfg until the test ends.
func startPrometheus(t *testing.T, bin string, cfg []byte) *promServer {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var log strings.Builder
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s\nconfiguration:\n%s", log.String(), cfg)
		}
	})
	p := &promServer{url: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited: %v\n%s", err, log.String())
		default:
		}
		if resp, err := http.Get(p.url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30 s\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitForSeries waits until query q returns at least n series (at most 30 s), and returns them
// as name{labels} with the labels sorted and job left out.
func (p *promServer) waitForSeries(t *testing.T, q string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := p.series(q)
		if err == nil && len(got) >= n || time.Now().After(deadline) {
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *promServer) series(q string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", p.url+"/api/v1/query?"+url.Values{"query": {q}}.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("query %s: %w: %s", q, err, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	var out []string
	for _, s := range r.Data.Result {
		var ls []string
		for _, k := range slices.Sorted(maps.Keys(s.Metric)) {
			if k != "__name__" && k != "job" {
				ls = append(ls, fmt.Sprintf("%s=%q", k, s.Metric[k]))
			}
		}
		out = append(out, s.Metric["__name__"]+"{"+strings.Join(ls, ",")+"}")
	}
	slices.Sort(out)
	return out, nil
}
