package containers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// What every command resolves --container and --netns into, from what the runtimes report: the
// scope resolver's logic, against fixtures (the e2e tests prove it against real runtimes).
func TestScopeTargets(t *testing.T) {
	host := Target{Name: HostName, Inode: 100, Path: "/proc/1/ns/net"}
	pinned := Target{Name: Name{Name: "lab"}, Inode: 900, Path: "/run/netns/lab"}
	running := []Container{
		{ID: "aaaa0000000000000001", Name: "web", Netns: 201, NetnsPath: "/proc/11/ns/net"},
		{ID: "aaaa0000000000000002", Name: "sidecar", Netns: 201, NetnsPath: "/proc/12/ns/net"}, // --network container:web
		{ID: "bbbb0000000000000001", Name: "db", Netns: 202, NetnsPath: "/proc/13/ns/net"},
		{ID: "cccc0000000000000001", Name: "hostnet", Netns: 100, NetnsPath: "/proc/14/ns/net"},
		{ID: "dddd0000000000000001", Name: "POD", Netns: 203, NetnsPath: "/proc/15/ns/net", Pod: Pod{Namespace: "shop", Name: "api-0"}, Sandbox: true},
		{ID: "dddd0000000000000002", Name: "api", Netns: 203, NetnsPath: "/proc/15/ns/net", Pod: Pod{Namespace: "shop", Name: "api-0"}},
		{ID: "eeee0000000000000001", Name: "stopped"}, // no namespace
	}
	names := func(ts []Target) string {
		var s []string
		for _, t := range ts {
			s = append(s, fmt.Sprintf("%s=%d", t.Display(), t.Inode))
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		name     string
		scope    Scope
		all      bool
		want     string
		missing  []string
		describe string
		filtered bool
	}{
		{name: "no filter: the host, then every namespace once, by name",
			scope: Scope{Host: host}, want: "host=100 db=202 shop/api-0=203 sidecar,web=201", describe: "all network namespaces"},
		{name: "--netns comes first, each namespace once",
			scope: Scope{Host: host, Fixed: []Target{pinned, host}}, want: "lab=900 host=100",
			describe: "netns lab, netns host", filtered: true},
		{name: "--container: only the selected, a pod by its namespace",
			scope: Scope{Host: host, Selected: []Selector{{ID: "bbbb0000000000000001", Name: "db"}, {Pod: "shop/api-0", Name: "shop/api-0"}}},
			want:  "db=202 shop/api-0=203", describe: "db, shop/api-0", filtered: true},
		{name: "a selected container on the host's network is the host",
			scope: Scope{Host: host, Selected: []Selector{{ID: "cccc0000000000000001", Name: "hostnet"}}},
			want:  "host=100", describe: "hostnet", filtered: true},
		{name: "a selected container that does not run is missing",
			scope: Scope{Host: host, Selected: []Selector{{ID: "eeee0000000000000001", Name: "stopped"}, {ID: "bbbb0000000000000001", Name: "db"}}},
			want:  "db=202", missing: []string{"stopped"}, describe: "stopped, db", filtered: true},
		{name: "all: everything, whatever is selected",
			scope: Scope{Host: host, Selected: []Selector{{ID: "bbbb0000000000000001", Name: "db"}}}, all: true,
			want: "host=100 db=202 shop/api-0=203 sidecar,web=201", describe: "db", filtered: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := names(tc.scope.Targets(running, tc.all)); got != tc.want {
				t.Errorf("targets %q, want %q", got, tc.want)
			}
			var missing []string
			for _, s := range tc.scope.Missing(running) {
				missing = append(missing, s.Name)
			}
			if !slices.Equal(missing, tc.missing) {
				t.Errorf("missing %q, want %q", missing, tc.missing)
			}
			if got := tc.scope.Describe(); got != tc.describe {
				t.Errorf("describe %q, want %q", got, tc.describe)
			}
			if got := tc.scope.Filtered(); got != tc.filtered {
				t.Errorf("filtered %v, want %v", got, tc.filtered)
			}
		})
	}
}

// Bad --netns values fail in one line that says what to give instead.
func TestParseNetnsRejectsWhatIsNotANamespace(t *testing.T) {
	host := Target{Name: HostName, Inode: 100}
	for _, tc := range []struct{ arg, want string }{
		{"0", "not a network namespace inode"},
		{"web", "want an inode"},
		{"proc/1/ns/net", "want an inode"},
		{"/nonexistent/ns/net", "--netns /nonexistent/ns/net"},
		{"99999999999", "want an inode"},
	} {
		_, err := ParseNetns(tc.arg, host)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("--netns %q: %v; want one line with %q", tc.arg, err, tc.want)
		}
	}
	// The host's own inode is the host, named.
	if got, err := ParseNetns("100", host); err != nil || got.Name != HostName {
		t.Errorf("the host's inode: %+v, %v", got, err)
	}
}

// Which runtime failures are worth a line: probed ones that fail, and finding none; not one the
// user named (that is an error elsewhere), not Docker's own containerd next to a Docker.
func TestProbeWarnings(t *testing.T) {
	docker := fakeRuntime{kind: "docker"}
	refused := errors.New("unix:///run/containerd/containerd.sock: connection refused")
	disabled := fmt.Errorf("unix:///run/containerd/containerd.sock: %w", ErrCRIDisabled)
	for _, tc := range []struct {
		name   string
		probes []Probe
		rts    []Runtime
		opts   Options
		want   []string
	}{
		{"a probed runtime that fails", []Probe{{Endpoint: "unix:///run/containerd/containerd.sock", Err: refused}, {Endpoint: "unix:///var/run/docker.sock"}},
			[]Runtime{docker}, Options{}, []string{refused.Error()}},
		{"Docker's own containerd says nothing", []Probe{{Endpoint: "unix:///run/containerd/containerd.sock", Err: disabled}, {Endpoint: "unix:///var/run/docker.sock"}},
			[]Runtime{docker}, Options{}, nil},
		{"a containerd without CRI alone is a warning, and so is having none",
			[]Probe{{Endpoint: "unix:///run/containerd/containerd.sock", Err: disabled}}, nil, Options{},
			[]string{disabled.Error(), "no container runtime answers (tried unix:///run/containerd/containerd.sock); showing network namespace inodes instead of names"}},
		{"a named runtime's failure is not a warning", []Probe{{Endpoint: "unix:///x.sock", Explicit: true, Err: refused}},
			[]Runtime{docker}, Options{Endpoints: []string{"unix:///x.sock"}}, nil},
		{"none at all, nothing probed", nil, nil, Options{HostRoot: "/host"},
			[]string{"no container runtime answers (no runtime socket at the well-known places under /host; name one with --runtime-endpoint); showing network namespace inodes instead of names"}},
		{"none asked for", nil, nil, Options{Endpoints: []string{NoRuntimes}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ProbeWarnings(tc.probes, tc.rts, tc.opts); !slices.Equal(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// fakeRuntime is a runtime that only says what it is: ProbeWarnings looks at nothing else.
type fakeRuntime struct{ kind string }

func (f fakeRuntime) Info() Info                                 { return Info{Kind: f.kind} }
func (fakeRuntime) Running(context.Context) ([]Container, error) { return nil, nil }
func (fakeRuntime) All(context.Context) ([]Container, error)     { return nil, nil }
func (fakeRuntime) Watch(context.Context, func(Event)) error     { return nil }
func (fakeRuntime) Close() error                                 { return nil }
