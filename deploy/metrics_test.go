package deploy

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The deployment files name metrics and labels that the exporter defines in one place, its
// prometheus.NewDesc calls. A renamed metric or label (sockscope_docker_up, k8s_pod) left behind
// in a rule would never fire, and nothing else would notice: these tests read the exporter's
// definitions from its source and hold every file of deploy/ to them.

// targetLabels are the labels Prometheus adds to every series: job and instance, and node from
// the Kubernetes scrape job and the PodMonitor.
var targetLabels = []string{"job", "instance", "node"}

// exportedMetrics returns each metric the exporter defines with its label names.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	dir := filepath.Join("..", "exporter")
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	src := goSource{vars: map[string]ast.Expr{}, funcs: map[string]*ast.FuncDecl{}}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					src.funcs[d.Name.Name] = d
				}
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					if vs, ok := sp.(*ast.ValueSpec); ok && len(vs.Names) == len(vs.Values) {
						for i, n := range vs.Names {
							src.vars[n.Name] = vs.Values[i]
						}
					}
				}
			}
		}
	}
	out := map[string][]string{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "NewDesc" || len(call.Args) != 4 {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
				return true
			}
			name, err := src.strings(call.Args[0], nil)
			if err != nil || len(name) != 1 {
				t.Fatalf("%s: metric name: %v", fset.Position(call.Pos()), err)
			}
			labels, err := src.strings(call.Args[2], nil)
			if err != nil {
				t.Fatalf("%s: labels of %s: %v", fset.Position(call.Pos()), name[0], err)
			}
			out[name[0]] = labels
			return true
		})
	}
	// The sockscope_tcp_ metrics and the info metric at least, or the reading went wrong.
	for _, m := range []string{"sockscope_tcp_connects_total", "sockscope_container_info", "sockscope_runtime_up"} {
		if _, ok := out[m]; !ok {
			t.Fatalf("%s: no prometheus.NewDesc(%q, ...) found", dir, m)
		}
	}
	return out
}

// goSource evaluates the few Go expressions that build label lists: string literals, []string
// literals, append, package variables, and package functions whose body returns one such
// expression of their parameters.
type goSource struct {
	vars  map[string]ast.Expr
	funcs map[string]*ast.FuncDecl
}

func (g goSource) strings(e ast.Expr, env map[string][]string) ([]string, error) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			s, err := strconv.Unquote(e.Value)
			return []string{s}, err
		}
	case *ast.Ident:
		if e.Name == "nil" {
			return nil, nil
		}
		if v, ok := env[e.Name]; ok {
			return v, nil
		}
		if x, ok := g.vars[e.Name]; ok {
			return g.strings(x, nil)
		}
	case *ast.CompositeLit:
		var out []string
		for _, el := range e.Elts {
			s, err := g.strings(el, env)
			if err != nil {
				return nil, err
			}
			out = append(out, s...)
		}
		return out, nil
	case *ast.CallExpr:
		fn, ok := e.Fun.(*ast.Ident)
		if !ok {
			break
		}
		var args [][]string
		for _, a := range e.Args {
			s, err := g.strings(a, env)
			if err != nil {
				return nil, err
			}
			args = append(args, s)
		}
		if fn.Name == "append" {
			return slices.Concat(args...), nil
		}
		f, ok := g.funcs[fn.Name]
		if !ok || len(f.Body.List) != 1 {
			break
		}
		ret, ok := f.Body.List[0].(*ast.ReturnStmt)
		if !ok || len(ret.Results) != 1 {
			break
		}
		bound := map[string][]string{}
		i := 0
		for _, p := range f.Type.Params.List {
			_, variadic := p.Type.(*ast.Ellipsis)
			for _, n := range p.Names {
				switch {
				case variadic:
					bound[n.Name] = slices.Concat(args[i:]...)
				case i < len(args):
					bound[n.Name] = args[i]
				}
				i++
			}
		}
		return g.strings(ret.Results[0], bound)
	}
	return nil, fmt.Errorf("cannot evaluate the expression at %d (%T)", e.Pos(), e)
}

// metricOf returns the exported metric a series name belongs to: itself, or for a histogram's
// _bucket, _sum and _count series the histogram.
func metricOf(metrics map[string][]string, series string) (string, bool) {
	if _, ok := metrics[series]; ok {
		return series, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if m, ok := strings.CutSuffix(series, suffix); ok {
			if _, ok := metrics[m]; ok {
				return m, true
			}
		}
	}
	return "", false
}

// labelsOf returns the labels a series of the metric can have in Prometheus.
func labelsOf(metrics map[string][]string, series string) []string {
	m, _ := metricOf(metrics, series)
	out := append(slices.Clone(metrics[m]), targetLabels...)
	if strings.HasSuffix(series, "_bucket") && m != series {
		out = append(out, "le")
	}
	return out
}

// perNamespace reports whether a query reads a per-namespace metric, one labelled with its
// network namespace's container, namespace and pod.
func perNamespace(metrics map[string][]string, q string) bool {
	for _, s := range selectors(q) {
		if slices.Contains(labelsOf(metrics, s.metric), "namespace") {
			return true
		}
	}
	return false
}

// selector is one series selector of a query: a metric name and its label matchers (label ->
// operator and quoted value).
type selector struct {
	metric   string
	matchers map[string]string
}

var (
	selectorRE = regexp.MustCompile(`\b(sockscope_[a-z_]+)\b(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")`)
	clauseRE   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
)

func selectors(q string) []selector {
	var out []selector
	for _, m := range selectorRE.FindAllStringSubmatch(q, -1) {
		s := selector{metric: m[1], matchers: map[string]string{}}
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			s.matchers[mm[1]] = mm[2] + mm[3]
		}
		out = append(out, s)
	}
	return out
}

// checkQuery reports the metrics a query names that the exporter does not define, and the labels
// it selects or groups by that none of its metrics has.
func checkQuery(metrics map[string][]string, q string) []string {
	var problems []string
	var all []string
	for _, s := range selectors(q) {
		if _, ok := metricOf(metrics, s.metric); !ok {
			problems = append(problems, fmt.Sprintf("the exporter has no metric %s", s.metric))
			continue
		}
		own := labelsOf(metrics, s.metric)
		all = append(all, own...)
		for l := range s.matchers {
			if !slices.Contains(own, l) {
				problems = append(problems, fmt.Sprintf("%s has no label %s", s.metric, l))
			}
		}
	}
	for _, m := range clauseRE.FindAllStringSubmatch(q, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(all, l) {
				problems = append(problems, fmt.Sprintf("no metric of the query has the label %s it groups or matches by", l))
			}
		}
	}
	return problems
}

func TestCheckQuery(t *testing.T) {
	metrics := map[string][]string{
		"sockscope_a_total":  {"container", "namespace", "pod", "result"},
		"sockscope_seconds":  {"container"},
		"sockscope_build_up": nil,
	}
	for q, want := range map[string]int{
		`sum by (instance, namespace, pod, container) (rate(sockscope_a_total{result!="success", container=~"$c"}[5m]))`: 0,
		`histogram_quantile(0.5, sum by (le, container) (rate(sockscope_seconds_bucket{job="x"}[1m])))`:                  0,
		`sockscope_build_up{instance=~".+"} and on(node) sockscope_build_up`:                                             0,
		`sockscope_docker_up == 0`:                                1,
		`sum by (k8s_pod) (sockscope_a_total{k8s_namespace="x"})`: 2,
		`sockscope_seconds_sum{le="1"}`:                           1,
	} {
		if got := checkQuery(metrics, q); len(got) != want {
			t.Errorf("checkQuery(%s) = %q, want %d problems", q, got, want)
		}
	}
}

// Every query of the rules and the dashboard, its variables included, uses the exporter's
// metrics and labels; so does every input series of rules_test.yml; and every sockscope_ name
// any file of deploy/ mentions is one of the exporter's metrics.
func TestDeployUsesExportedMetrics(t *testing.T) {
	metrics := exportedMetrics(t)
	exprs, err := Expressions()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exprs {
		for _, p := range checkQuery(metrics, e.Query) {
			t.Errorf("%s %q: %s: %s", e.Source, e.Name, p, e.Query)
		}
	}
	d, err := readDashboard()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := strings.TrimSuffix(strings.TrimPrefix(v.Definition, "label_values("), ")")
		i := strings.LastIndex(q, ", ")
		if i < 0 || len(selectors(q[:i])) != 1 {
			t.Errorf("variable %s: want label_values(SELECTOR, LABEL), got %q", v.Name, v.Definition)
			continue
		}
		sel, label := q[:i], q[i+2:]
		for _, p := range checkQuery(metrics, sel) {
			t.Errorf("variable %s: %s: %s", v.Name, p, v.Definition)
		}
		if !slices.Contains(labelsOf(metrics, selectors(sel)[0].metric), label) {
			t.Errorf("variable %s: %s has no label %s", v.Name, selectors(sel)[0].metric, label)
		}
	}

	var tf struct {
		Tests []struct {
			Name        string `json:"name"`
			InputSeries []struct {
				Series string `json:"series"`
			} `json:"input_series"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(read(t, RulesTest), &tf); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tf.Tests {
		for _, in := range tc.InputSeries {
			// An input series is a selector with = matchers only.
			for _, p := range checkQuery(metrics, in.Series) {
				t.Errorf("rules_test.yml %q: input series %s: %s", tc.Name, in.Series, p)
			}
		}
	}

	mention := regexp.MustCompile(`\bsockscope_[a-z_]+`)
	for _, name := range []string{DaemonSet, PodMonitor, WebConfig, WebConfigPatch, ScrapeConfig, Rules, RulesTest, Dashboard, SystemdUnit, "README.md"} {
		b, err := os.ReadFile(filepath.FromSlash(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mention.FindAllString(string(b), -1) {
			if strings.HasSuffix(m, "_") {
				// A prefix (sockscope_runtime_*) must begin some metric's name.
				if !slices.ContainsFunc(slices.Collect(maps.Keys(metrics)), func(k string) bool { return strings.HasPrefix(k, m) }) {
					t.Errorf("%s mentions %s*, which begins no metric of the exporter", name, m)
				}
				continue
			}
			if _, ok := metricOf(metrics, m); !ok {
				t.Errorf("%s mentions %s, which the exporter does not export", name, m)
			}
		}
	}
}
