// Package deploy holds the files that run `sockscope export` in production: a systemd unit, a
// Kubernetes DaemonSet and a Prometheus Operator PodMonitor, a Prometheus scrape configuration,
// alerting rules with their promtool unit tests, and a Grafana dashboard. The files are embedded, so tests can check them and run
// every query they contain against a real Prometheus (Expressions).
package deploy

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"

	"sigs.k8s.io/yaml"
)

// Paths of the embedded files inside Files().
const (
	SystemdUnit = "systemd/sockscope.service"
	DaemonSet   = "kubernetes/daemonset.yaml"
	PodMonitor  = "kubernetes/podmonitor.yaml"
	// WebConfig and WebConfigPatch are the example of TLS and basic auth: a Secret with the
	// web configuration, and a patch of DaemonSet that mounts it.
	WebConfig      = "kubernetes/web-config.yaml"
	WebConfigPatch = "kubernetes/daemonset-web-config.yaml"
	ScrapeConfig   = "prometheus/scrape.yml"
	Rules          = "prometheus/rules.yml"
	RulesTest      = "prometheus/rules_test.yml"
	Dashboard      = "grafana/dashboard.json"
)

//go:embed systemd/sockscope.service kubernetes/daemonset.yaml kubernetes/podmonitor.yaml
//go:embed kubernetes/web-config.yaml kubernetes/daemonset-web-config.yaml
//go:embed prometheus/scrape.yml prometheus/rules.yml prometheus/rules_test.yml
//go:embed grafana/dashboard.json
var files embed.FS

// Files returns the deployment files, under the paths named by the constants above.
func Files() fs.FS { return files }

// Expr is one PromQL expression from the deployment files.
type Expr struct {
	Source string // Rules or Dashboard
	Name   string // the alert's name, or "panel title [refId]"
	Query  string // runnable in a plain Prometheus (Grafana variables substituted)
}

// grafanaVars replaces the dashboard's variables with values a plain Prometheus accepts: the
// intervals become one minute (four 15-second scrapes), and the variables, always used with =~,
// take their "All" values: everything, and for namespace also the empty value of the series
// outside Kubernetes.
var grafanaVars = strings.NewReplacer(
	"${__rate_interval}", "1m",
	"$__rate_interval", "1m",
	"${__interval}", "1m",
	"$__interval", "1m",
	"${namespace}", ".*",
	"$namespace", ".*",
	"${container}", ".+",
	"$container", ".+",
	"${instance}", ".+",
	"$instance", ".+",
)

// SubstituteGrafanaVars turns a dashboard query into PromQL for a plain Prometheus.
func SubstituteGrafanaVars(q string) string { return grafanaVars.Replace(q) }

// Expressions returns every alert expression of rules.yml and every panel query of
// dashboard.json, in file order.
func Expressions() ([]Expr, error) {
	alerts, err := alertRules()
	if err != nil {
		return nil, err
	}
	var out []Expr
	for _, a := range alerts {
		out = append(out, Expr{Source: Rules, Name: a.Alert, Query: strings.TrimSpace(a.Expr)})
	}
	panels, err := dashboardPanels()
	if err != nil {
		return nil, err
	}
	for _, p := range panels {
		for _, t := range p.Targets {
			out = append(out, Expr{
				Source: Dashboard,
				Name:   fmt.Sprintf("%s [%s]", p.Title, t.RefID),
				Query:  SubstituteGrafanaVars(strings.TrimSpace(t.Expr)),
			})
		}
	}
	return out, nil
}

// rule is the part of a Prometheus rule this package reads.
type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

// alertRules returns the alerting rules of rules.yml.
func alertRules() ([]rule, error) {
	b, err := files.ReadFile(Rules)
	if err != nil {
		return nil, err
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", Rules, err)
	}
	var out []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no alerting rules", Rules)
	}
	return out, nil
}

// panel is the part of a Grafana panel this package reads.
type panel struct {
	ID      int      `json:"id"`
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Panels  []panel  `json:"panels"` // a collapsed row's panels
	Targets []target `json:"targets"`
	Data    *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
}

type target struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

type dashboard struct {
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			AllValue   string          `json:"allValue"`
			Multi      bool            `json:"multi"`
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard() (*dashboard, error) {
	b, err := files.ReadFile(Dashboard)
	if err != nil {
		return nil, err
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", Dashboard, err)
	}
	return &d, nil
}

// dashboardPanels returns the dashboard's panels other than rows, those inside collapsed rows
// included, in order.
func dashboardPanels() ([]panel, error) {
	d, err := readDashboard()
	if err != nil {
		return nil, err
	}
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no panels", Dashboard)
	}
	return out, nil
}
