package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sockscope/sockscope/internal/testenv"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := files.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The files on disk are the ones embedded (the test runs in the package directory).
func TestEmbeddedMatchDisk(t *testing.T) {
	for _, name := range []string{SystemdUnit, DaemonSet, PodMonitor, WebConfig, WebConfigPatch, ScrapeConfig, Rules, RulesTest, Dashboard} {
		disk, err := os.ReadFile(filepath.FromSlash(name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(disk, read(t, name)) {
			t.Errorf("%s: embedded copy differs from the file", name)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

func loadDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	var ds appsv1.DaemonSet
	decodeStrict(t, DaemonSet, &ds)
	return &ds
}

// decodeStrict decodes the single YAML document name into v, which must hold every key of it.
func decodeStrict(t *testing.T, name string, v any) {
	t.Helper()
	b := read(t, name)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "---") {
			t.Fatalf("%s must be a single YAML document, found a %q separator", name, line)
		}
	}
	// Strict: a misspelt or misplaced field is an error instead of being dropped.
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	// encoding/json matches field names regardless of case, so "readOnlyRootFileSystem" would
	// pass the strict decoding; the API server would reject it. Every key of the file must come
	// back, spelt the same, when the decoded object is encoded again.
	var src, back any
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &src); err != nil {
		t.Fatal(err)
	}
	j, err = json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range missingKeys(src, back, "") {
		t.Errorf("%s: %s is not a field of the type as spelt (case matters)", name, k)
	}
}

// missingKeys lists the object keys of a that b lacks at the same place.
func missingKeys(a, b any, path string) []string {
	var out []string
	switch a := a.(type) {
	case map[string]any:
		bm, _ := b.(map[string]any)
		for k, v := range a {
			bv, ok := bm[k]
			if !ok {
				out = append(out, path+"."+k)
				continue
			}
			out = append(out, missingKeys(v, bv, path+"."+k)...)
		}
	case []any:
		bl, _ := b.([]any)
		for i, v := range a {
			var bv any
			if i < len(bl) {
				bv = bl[i]
			}
			out = append(out, missingKeys(v, bv, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return out
}

func TestDaemonSet(t *testing.T) {
	ds := loadDaemonSet(t)
	if ds.APIVersion != "apps/v1" || ds.Kind != "DaemonSet" {
		t.Errorf("apiVersion/kind = %s/%s, want apps/v1/DaemonSet", ds.APIVersion, ds.Kind)
	}
	if ds.Namespace != "monitoring" || ds.Name != "sockscope" {
		t.Errorf("namespace/name = %s/%s, want monitoring/sockscope", ds.Namespace, ds.Name)
	}
	if ds.Spec.Selector == nil || len(ds.Spec.Selector.MatchLabels) == 0 {
		t.Fatal("no selector")
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels %v", k, v, ds.Spec.Template.Labels)
		}
	}
	ann := ds.Spec.Template.Annotations
	for k, want := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9890", "prometheus.io/path": "/metrics"} {
		if ann[k] != want {
			t.Errorf("pod annotation %s = %q, want %q", k, ann[k], want)
		}
	}

	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID must be true: container namespaces are found through /proc/PID/ns/net")
	}
	if !pod.HostNetwork {
		t.Error("hostNetwork must be true: container=\"host\" must be the node")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken should be false: the exporter does not use the API")
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Errorf("tolerations %+v do not tolerate every taint (operator: Exists)", pod.Tolerations)
	}
	if sp := pod.SecurityContext; sp == nil || sp.SeccompProfile == nil || sp.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccompProfile should be RuntimeDefault")
	}

	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if !strings.HasPrefix(c.Image, "ghcr.io/sockscope/sockscope:") {
		t.Errorf("image %q", c.Image)
	}
	if len(c.Args) == 0 || c.Args[0] != "export" {
		t.Errorf("args %q must start with export", c.Args)
	}
	// The node IP only, not every interface of the node (the pod has the node's network).
	if !slices.Contains(c.Args, "--web.listen-address=$(NODE_IP):9890") {
		t.Errorf("args %q: want --web.listen-address=$(NODE_IP):9890", c.Args)
	}
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NODE_IP" }); i < 0 || c.Env[i].ValueFrom == nil ||
		c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("env %+v: want NODE_IP from the field status.hostIP", c.Env)
	}

	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("the container must not be privileged")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation should be false")
	}
	if sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	if got := sc.Capabilities.Drop; !slices.Equal(got, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities.drop = %v, want [ALL]", got)
	}
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	if want := []corev1.Capability{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE"}; !slices.Equal(add, want) {
		t.Errorf("capabilities.add = %v, want exactly %v", sc.Capabilities.Add, want)
	}

	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != 9890 || c.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("ports = %+v, want one TCP port 9890 named metrics", c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet probe", name)
			continue
		}
		if p.HTTPGet.Path != "/-/healthy" || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe: GET %s on port %s, want /-/healthy (no scrape) on port metrics", name, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}

	// Volumes: kernel BTF, and the host's /run as a directory (a socket file mounted alone goes
	// stale when its runtime recreates it), both read-only; nothing else from the host. /run is
	// where --host-root says the host's / is, and mounts made on the host later (namespaces
	// CRI-O pins) must show through it.
	hostRoot := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--host-root="); ok {
			hostRoot = v
		}
		if strings.HasPrefix(a, "--docker-host") || strings.HasPrefix(a, "--runtime-endpoint") {
			t.Errorf("args %q: %s turns the probing of every runtime off", c.Args, a)
		}
	}
	if hostRoot == "" {
		t.Fatalf("args %q: want --host-root=DIR, where the host's /run is mounted as DIR/run", c.Args)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
		if _, ok := vols[m.Name]; !ok {
			t.Errorf("mount %s uses the undefined volume %s", m.MountPath, m.Name)
		}
	}
	if len(mounts) != 2 || len(vols) != 2 {
		t.Errorf("want exactly the btf and host-run volumes, got mounts %v, volumes %v", c.VolumeMounts, pod.Volumes)
	}
	for _, want := range []struct {
		hostPath, mountPath string
		propagation         corev1.MountPropagationMode
	}{
		{"/sys/kernel/btf", "/sys/kernel/btf", ""},
		{"/run", path.Join(hostRoot, "run"), corev1.MountPropagationHostToContainer},
	} {
		m, ok := mounts[want.mountPath]
		if !ok {
			t.Errorf("no mount at %s (of the host's %s)", want.mountPath, want.hostPath)
			continue
		}
		if !m.ReadOnly {
			t.Errorf("%s should be mounted read-only", want.mountPath)
		}
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Errorf("%s: a subPath is bound once, like a file, and goes stale the same way", want.mountPath)
		}
		var got corev1.MountPropagationMode
		if m.MountPropagation != nil {
			got = *m.MountPropagation
		}
		if got != want.propagation {
			t.Errorf("%s: mountPropagation %q, want %q", want.mountPath, got, want.propagation)
		}
		hp := vols[m.Name].HostPath
		if hp == nil || hp.Path != want.hostPath || hp.Type == nil || *hp.Type != corev1.HostPathDirectory {
			t.Errorf("volume %s: want hostPath %s of type Directory, got %+v", m.Name, want.hostPath, hp)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Prometheus

func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin := testenv.Command(t, "promtool")
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool(t, "check", "rules", filepath.FromSlash(Rules))
}

func TestPromtoolTestRules(t *testing.T) {
	promtool(t, "test", "rules", filepath.FromSlash(RulesTest))
}

type scrapeFile struct {
	RuleFiles     []string         `json:"rule_files"`
	ScrapeConfigs []map[string]any `json:"scrape_configs"`
}

// The scrape configuration is valid, every job scrapes every 15 s, and the Kubernetes job finds
// the DaemonSet's pods and keeps the namespace, pod and container labels they export.
func TestScrapeConfig(t *testing.T) {
	var sf scrapeFile
	if err := yaml.Unmarshal(read(t, ScrapeConfig), &sf); err != nil {
		t.Fatal(err)
	}
	if len(sf.ScrapeConfigs) < 2 {
		t.Fatalf("want a static and a Kubernetes job, got %d jobs", len(sf.ScrapeConfigs))
	}
	var k8sJob map[string]any
	for _, j := range sf.ScrapeConfigs {
		if j["scrape_interval"] != "15s" {
			t.Errorf("job %v: scrape_interval %v, want 15s", j["job_name"], j["scrape_interval"])
		}
		if _, ok := j["kubernetes_sd_configs"]; ok {
			k8sJob = j
		}
	}
	if k8sJob == nil {
		t.Fatal("no kubernetes_sd_configs job")
	}
	// Pod discovery jobs usually turn the exporter pod's namespace and name into target labels,
	// which would rename the exported ones exported_*. This job adds none (see
	// TestKubernetesScrapeKeepsTheExportersLabels); honor_labels keeps the exporter's labels
	// when it is merged into a job that does.
	if k8sJob["honor_labels"] != true {
		t.Errorf("job %v: honor_labels %v, want true", k8sJob["job_name"], k8sJob["honor_labels"])
	}

	// The keep rule selects the DaemonSet's pods by its annotation and port name.
	meta := podDiscoveryLabels(t, loadDaemonSet(t))
	b, _ := json.Marshal(k8sJob["relabel_configs"])
	var relabels []struct {
		SourceLabels []string `json:"source_labels"`
		Regex        string   `json:"regex"`
		Action       string   `json:"action"`
	}
	if err := json.Unmarshal(b, &relabels); err != nil {
		t.Fatal(err)
	}
	keeps := 0
	for _, r := range relabels {
		if r.Action != "keep" {
			continue
		}
		keeps++
		var vals []string
		for _, l := range r.SourceLabels {
			v, ok := meta[l]
			if !ok {
				t.Errorf("keep rule on %s: the test does not know that label", l)
			}
			vals = append(vals, v)
		}
		if !regexp.MustCompile("^(?:" + r.Regex + ")$").MatchString(strings.Join(vals, ";")) {
			t.Errorf("keep rule %v =~ %q drops the DaemonSet's pods (values %q)", r.SourceLabels, r.Regex, vals)
		}
	}
	if keeps == 0 {
		t.Error("the Kubernetes job keeps every port of every pod")
	}
	sd, _ := json.Marshal(k8sJob["kubernetes_sd_configs"])
	if !bytes.Contains(sd, []byte(`"monitoring"`)) || !bytes.Contains(sd, []byte(`"pod"`)) {
		t.Errorf("kubernetes_sd_configs %s: want role pod in namespace monitoring", sd)
	}

	// promtool checks the whole file, rules included. Some builds (Debian's) have no
	// Kubernetes discovery; they check the file without that job.
	bin := testenv.Command(t, "promtool")
	out, err := exec.Command(bin, "check", "config", filepath.FromSlash(ScrapeConfig)).CombinedOutput()
	if err == nil {
		t.Logf("promtool check config:\n%s", out)
		return
	}
	if !bytes.Contains(out, []byte("kubernetes_sd_configs not found")) {
		t.Fatalf("promtool check config %s: %v\n%s", ScrapeConfig, err, out)
	}
	t.Logf("this promtool has no Kubernetes discovery; checking the file without job %v", k8sJob["job_name"])
	var raw map[string]any
	if err := yaml.Unmarshal(read(t, ScrapeConfig), &raw); err != nil {
		t.Fatal(err)
	}
	var jobs []any
	for _, j := range sf.ScrapeConfigs {
		if _, ok := j["kubernetes_sd_configs"]; !ok {
			jobs = append(jobs, j)
		}
	}
	raw["scrape_configs"] = jobs
	abs, err := filepath.Abs(filepath.Dir(filepath.FromSlash(ScrapeConfig)))
	if err != nil {
		t.Fatal(err)
	}
	var rf []any
	for _, f := range sf.RuleFiles {
		rf = append(rf, filepath.Join(abs, f))
	}
	raw["rule_files"] = rf
	y, err := yaml.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "scrape.yml")
	if err := os.WriteFile(tmp, y, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "config", tmp)
}

// Every alert is labelled, explained, and covered by rules_test.yml both firing and not.
func TestAlertRules(t *testing.T) {
	alerts, err := alertRules()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"SockscopeLocalPortExhaustion": "critical",
		"SockscopeTimeWaitPileUp":      "warning",
		"SockscopeConnectErrors":       "warning",
		"SockscopeLostEvents":          "warning",
		"SockscopeRuntimeDown":         "warning",
	}
	metrics := exportedMetrics(t)
	seen := map[string]bool{}
	for _, a := range alerts {
		if seen[a.Alert] {
			t.Errorf("alert %s defined twice", a.Alert)
		}
		seen[a.Alert] = true
		if sev, ok := want[a.Alert]; ok && a.Labels["severity"] != sev {
			t.Errorf("%s: severity %q, want %q", a.Alert, a.Labels["severity"], sev)
		}
		if s := a.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", a.Alert, s)
		}
		if a.For == "" {
			t.Errorf("%s: no for:", a.Alert)
		}
		for _, k := range []string{"summary", "description", "remediation"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("%s: no %s annotation", a.Alert, k)
			}
		}
		if !strings.Contains(a.Annotations["summary"]+a.Annotations["description"], "$labels.") {
			t.Errorf("%s: summary and description name no label", a.Alert)
		}
		// An alert about a network namespace names the pod when there is one: on a
		// Kubernetes node that is what the reader looks for.
		if perNamespace(metrics, a.Expr) {
			for _, k := range []string{"summary", "description"} {
				if !strings.Contains(a.Annotations[k], "{{ if $labels.pod }}") {
					t.Errorf("%s: the %s does not name the pod ({{ if $labels.pod }}...)", a.Alert, k)
				}
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("alert %s missing", name)
		}
	}

	// The two expressions given in the design, verbatim (up to spacing).
	byName := map[string]string{}
	for _, a := range alerts {
		byName[a.Alert] = strings.Join(strings.Fields(a.Expr), " ")
	}
	for name, part := range map[string]string{
		"SockscopeLocalPortExhaustion": `increase(sockscope_tcp_connects_total{result="EADDRNOTAVAIL"}[5m]) > 0`,
		"SockscopeTimeWaitPileUp":      `sockscope_tcp_sockets{state="TIME_WAIT"} / ignoring(state) sockscope_tcp_ephemeral_ports > 0.5`,
	} {
		if !strings.Contains(byName[name], part) {
			t.Errorf("%s: expression %q does not contain %q", name, byName[name], part)
		}
	}
	// Grouped by namespace and pod, which join with kube-state-metrics, and by container, which
	// alone tells apart a Docker host's series.
	if e := byName["SockscopeConnectErrors"]; strings.Count(e, "sum by (instance, namespace, pod, container)") != 3 {
		t.Errorf("SockscopeConnectErrors: want ratio and minimum rate each summed by (instance, namespace, pod, container): %s", e)
	}
	// A runtime that never answered, or has been gone a day, does not fire.
	if e, want := byName["SockscopeRuntimeDown"], "sockscope_runtime_up == 0 and max_over_time(sockscope_runtime_up[1d]) == 1"; e != want {
		t.Errorf("SockscopeRuntimeDown: expression %q, want %q", e, want)
	}

	// Coverage by rules_test.yml.
	var tf struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []struct {
					ExpLabels map[string]string `json:"exp_labels"`
				} `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(read(t, RulesTest), &tf); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tf.RuleFiles, []string{"rules.yml"}) {
		t.Errorf("rules_test.yml tests %v, want [rules.yml]", tf.RuleFiles)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	// Per alert, the kinds of series it fired for: "pod" (a Kubernetes node's pod), "container"
	// (a Docker host's container), and each runtime.
	firedFor := map[string]map[string]bool{}
	for _, tc := range tf.Tests {
		for _, art := range tc.AlertRuleTest {
			if !seen[art.Alertname] {
				t.Errorf("rules_test.yml tests the unknown alert %s", art.Alertname)
			}
			if len(art.ExpAlerts) > 0 {
				fires[art.Alertname] = true
			} else {
				quiet[art.Alertname] = true
			}
			for _, ea := range art.ExpAlerts {
				if firedFor[art.Alertname] == nil {
					firedFor[art.Alertname] = map[string]bool{}
				}
				switch l := ea.ExpLabels; {
				case l["pod"] != "":
					firedFor[art.Alertname]["pod"] = true
				case l["container"] != "":
					firedFor[art.Alertname]["container"] = true
				}
				if rt := ea.ExpLabels["runtime"]; rt != "" {
					firedFor[art.Alertname][rt] = true
				}
			}
		}
	}
	for name := range seen {
		if !fires[name] {
			t.Errorf("rules_test.yml: no case where %s fires", name)
		}
		if !quiet[name] {
			t.Errorf("rules_test.yml: no case where %s stays quiet", name)
		}
	}
	// The per-namespace alerts are tested on both kinds of node, and the runtime alert with
	// Docker and with a CRI runtime.
	for _, a := range alerts {
		var kinds []string
		switch {
		case perNamespace(metrics, a.Expr):
			kinds = []string{"pod", "container"}
		case strings.Contains(a.Expr, "sockscope_runtime_up"):
			kinds = []string{"docker", "containerd"}
		}
		for _, k := range kinds {
			if !firedFor[a.Alert][k] {
				t.Errorf("rules_test.yml: no case where %s fires for a %s", a.Alert, k)
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Grafana and the expressions

func TestDashboard(t *testing.T) {
	d, err := readDashboard()
	if err != nil {
		t.Fatal(err)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d", d.SchemaVersion)
	}
	vars := map[string]int{}
	for i, v := range d.Templating.List {
		vars[v.Name] = i
	}
	if i, ok := vars["datasource"]; !ok || d.Templating.List[i].Type != "datasource" || string(d.Templating.List[i].Query) != `"prometheus"` {
		t.Error(`want a variable "datasource" of type datasource for prometheus`)
	}
	// Each variable narrows the next one's choices (instance, then namespace, then container).
	// "All" matches everything; for namespace that includes the empty value, which is every
	// series outside Kubernetes: Docker containers, host, --netns namespaces.
	for i, want := range []struct{ name, allValue, after string }{
		{"instance", ".+", ""},
		{"namespace", ".*", "instance"},
		{"container", ".+", "namespace"},
	} {
		j, ok := vars[want.name]
		if !ok {
			t.Errorf("no variable %s", want.name)
			continue
		}
		if j != i+1 {
			t.Errorf("variable %s is number %d, want %d (datasource, instance, namespace, container)", want.name, j, i+1)
		}
		v := d.Templating.List[j]
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query %s: %v", want.name, v.Query, err)
		}
		if v.Type != "query" || !strings.HasPrefix(q.Query, "label_values(sockscope_container_info") ||
			!strings.HasSuffix(q.Query, ", "+want.name+")") || v.Definition != q.Query {
			t.Errorf("variable %s: want label_values(sockscope_container_info..., %s), got %q / %q", want.name, want.name, v.Definition, q.Query)
		}
		if want.after != "" && !strings.Contains(q.Query, fmt.Sprintf(`%s=~"$%[1]s"`, want.after)) {
			t.Errorf("variable %s: its values do not follow $%s: %s", want.name, want.after, q.Query)
		}
		// Multi-value and "All" become regexes, which is why queries use =~.
		if !v.Multi || v.AllValue != want.allValue {
			t.Errorf("variable %s: want multi-value with allValue %s, got %v and %q", want.name, want.allValue, v.Multi, v.AllValue)
		}
		// The queries Expressions returns are the dashboard's with "All" chosen.
		for _, ref := range []string{"$" + want.name, "${" + want.name + "}"} {
			if got := SubstituteGrafanaVars(ref); got != v.AllValue {
				t.Errorf("SubstituteGrafanaVars(%s) = %q, want the variable's allValue %q", ref, got, v.AllValue)
			}
		}
	}
	metrics := exportedMetrics(t)

	panels, err := dashboardPanels()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int]bool{}
	var walkIDs func([]panel)
	walkIDs = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			walkIDs(p.Panels)
		}
	}
	walkIDs(d.Panels)

	varUse := regexp.MustCompile(`\$\{?(\w+)\}?`)
	goodUse := regexp.MustCompile(`\b(instance|namespace|container)=~"\$(instance|namespace|container)"`)
	for _, p := range panels {
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Data == nil || p.Data.UID != "${datasource}" {
			t.Errorf("panel %q: datasource must be ${datasource}", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q [%s]: empty expr", p.Title, tg.RefID)
				continue
			}
			// Every selector follows $instance, and those of per-namespace metrics follow
			// $namespace and $container too; the exporter's own metrics have neither label.
			for _, sel := range selectors(tg.Expr) {
				want := []string{"instance"}
				if slices.Contains(labelsOf(metrics, sel.metric), "namespace") {
					want = []string{"instance", "namespace", "container"}
				}
				for _, l := range []string{"instance", "namespace", "container"} {
					m, ok := sel.matchers[l]
					switch {
					case slices.Contains(want, l) && m != `=~"$`+l+`"`:
						t.Errorf("panel %q [%s]: %s should select %s=~\"$%[4]s\": %[5]s", p.Title, tg.RefID, sel.metric, l, tg.Expr)
					case !slices.Contains(want, l) && ok:
						t.Errorf("panel %q [%s]: %s has no label %s: %s", p.Title, tg.RefID, sel.metric, l, tg.Expr)
					}
				}
			}
			// $instance, $namespace and $container appear only as label=~"$var" (they hold regexes);
			// ranges are only $__rate_interval.
			rest := goodUse.ReplaceAllStringFunc(tg.Expr, func(m string) string {
				if sub := goodUse.FindStringSubmatch(m); sub[1] != sub[2] {
					t.Errorf("panel %q [%s]: %s", p.Title, tg.RefID, m)
				}
				return ""
			})
			rest = strings.ReplaceAll(rest, "[$__rate_interval]", "")
			if m := varUse.FindString(rest); m != "" {
				t.Errorf("panel %q [%s]: variable %s used other than as label=~\"$var\" or [$__rate_interval]: %s", p.Title, tg.RefID, m, tg.Expr)
			}
			if strings.Contains(rest, "[") {
				t.Errorf("panel %q [%s]: a fixed range; use [$__rate_interval]: %s", p.Title, tg.RefID, tg.Expr)
			}
		}
	}
}

// balanced reports whether (), [] and {} nest correctly outside string literals.
func balanced(q string) bool {
	var stack []rune
	closing := map[rune]rune{')': '(', ']': '[', '}': '{'}
	var quote rune
	escaped := false
	for _, r := range q {
		switch {
		case quote != 0:
			switch {
			case escaped:
				escaped = false
			case r == '\\' && quote != '`':
				escaped = true
			case r == quote:
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case closing[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != closing[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && quote == 0
}

func TestBalanced(t *testing.T) {
	for q, want := range map[string]bool{
		`sum(rate(x{a="(["}[1m]))`:  true,
		`sum(rate(x{a="\"}"}[1m]))`: true,
		`sum(rate(x[1m])`:           false,
		`x{a="b"]`:                  false,
		`x{a="b}`:                   false,
	} {
		if got := balanced(q); got != want {
			t.Errorf("balanced(%s) = %v, want %v", q, got, want)
		}
	}
}

func TestExpressions(t *testing.T) {
	exprs, err := Expressions()
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) == 0 {
		t.Fatal("no expressions")
	}
	alerts, err := alertRules()
	if err != nil {
		t.Fatal(err)
	}
	panels, err := dashboardPanels()
	if err != nil {
		t.Fatal(err)
	}
	nTargets := 0
	for _, p := range panels {
		nTargets += len(p.Targets)
	}
	bySource := map[string]int{}
	names := map[string]bool{}
	metric := regexp.MustCompile(`\bsockscope_[a-z_]+`)
	for _, e := range exprs {
		bySource[e.Source]++
		key := e.Source + "/" + e.Name
		if names[key] {
			t.Errorf("%s: name used twice", key)
		}
		names[key] = true
		if e.Query == "" {
			t.Errorf("%s: empty query", key)
			continue
		}
		if strings.Contains(e.Query, "$") {
			t.Errorf("%s: a Grafana variable is left: %s", key, e.Query)
		}
		if !balanced(e.Query) {
			t.Errorf("%s: unbalanced brackets or quotes: %s", key, e.Query)
		}
		if !metric.MatchString(e.Query) {
			t.Errorf("%s: no sockscope_ metric: %s", key, e.Query)
		}
		t.Logf("%s\n\t%s", key, strings.Join(strings.Fields(e.Query), " "))
	}
	if bySource[Rules] != len(alerts) {
		t.Errorf("%d rule expressions, %d alerts", bySource[Rules], len(alerts))
	}
	if bySource[Dashboard] != nTargets {
		t.Errorf("%d dashboard expressions, %d targets", bySource[Dashboard], nTargets)
	}
	if len(exprs) != bySource[Rules]+bySource[Dashboard] {
		t.Errorf("expressions from unknown sources: %v", bySource)
	}
}

// Every expression, the dashboard's after substitution, goes through Prometheus's own parser:
// promtool check rules on a file with one recording rule per expression.
func TestExpressionsParse(t *testing.T) {
	exprs, err := Expressions()
	if err != nil {
		t.Fatal(err)
	}
	type recording struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []recording
	for i, e := range exprs {
		rules = append(rules, recording{Record: fmt.Sprintf("sockscope:parse_check_%d", i), Expr: e.Query})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "parse", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "parse.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := testenv.Command(t, "promtool")
	out, err := exec.Command(bin, "check", "rules", path).CombinedOutput()
	if err != nil {
		// The message names the rule; map its number back to the expression.
		for i, e := range exprs {
			if bytes.Contains(out, []byte(fmt.Sprintf("parse_check_%d\"", i))) || bytes.Contains(out, []byte(fmt.Sprintf("group \"parse\", rule %d,", i+1))) {
				t.Errorf("%s/%s: %s", e.Source, e.Name, e.Query)
			}
		}
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestSubstituteGrafanaVars(t *testing.T) {
	in := `sum by (container) (rate(m{instance=~"$instance", namespace=~"$namespace", container=~"${container}"}[$__rate_interval])) + rate(m{namespace=~"${namespace}"}[${__interval}])`
	want := `sum by (container) (rate(m{instance=~".+", namespace=~".*", container=~".+"}[1m])) + rate(m{namespace=~".*"}[1m])`
	if got := SubstituteGrafanaVars(in); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// ---------------------------------------------------------------------------------------------
// systemd

// unitValues returns the unit's assignments (key -> values, in order), comments skipped.
func unitValues(t *testing.T) map[string][]string {
	t.Helper()
	vals := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(read(t, SystemdUnit)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not an assignment: %q", SystemdUnit, line)
		}
		vals[k] = append(vals[k], v)
	}
	return vals
}

func TestSystemdUnit(t *testing.T) {
	u := unitValues(t)
	one := func(k string) string {
		if len(u[k]) != 1 {
			t.Errorf("%s: want one %s=, got %q", SystemdUnit, k, u[k])
			return ""
		}
		return u[k][0]
	}
	if e := one("ExecStart"); !strings.HasPrefix(e, "/usr/local/bin/sockscope export") {
		t.Errorf("ExecStart=%s", e)
	}
	caps := strings.Fields(one("CapabilityBoundingSet"))
	slices.Sort(caps)
	if want := []string{"CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}; !slices.Equal(caps, want) {
		t.Errorf("CapabilityBoundingSet = %v, want %v", caps, want)
	}
	for k, want := range map[string]string{
		"Restart":                 "on-failure",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"NoNewPrivileges":         "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"RestrictNamespaces":      "net",
		"SystemCallArchitectures": "native",
	} {
		if got := one(k); got != want {
			t.Errorf("%s=%s, want %s", k, got, want)
		}
	}
	if f := one("SystemCallFilter"); !strings.Contains(f, "bpf") {
		t.Errorf("SystemCallFilter=%s does not allow bpf()", f)
	}
	// Options that would blind the exporter.
	for _, k := range []string{"ProtectProc", "ProcSubset", "PrivateNetwork", "PrivateUsers", "PrivatePIDs", "InaccessiblePaths", "User", "DynamicUser"} {
		if _, ok := u[k]; ok {
			t.Errorf("%s= must not be set: %v", k, u[k])
		}
	}
}

// systemd-analyze verify, when systemd is installed (it is not a CI prerequisite).
func TestSystemdAnalyzeVerify(t *testing.T) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	// verify insists that ExecStart's binary exists: point it at this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(read(t, SystemdUnit)), "/usr/local/bin/sockscope", self)
	path := filepath.Join(t.TempDir(), "sockscope.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "verify", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Unknown or malformed settings are only warnings, printed with the file's name.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "sockscope.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}
