package containers

import (
	"strings"
	"testing"
)

func TestDisplayName(t *testing.T) {
	pod := Pod{Namespace: "shop", Name: "web-0", UID: "u1"}
	sandbox := Container{ID: "ffff" + strings.Repeat("0", 60), Pod: pod, Sandbox: true}
	web := Container{ID: "bbbb" + strings.Repeat("1", 60), Name: "web", Pod: pod}
	sidecar := Container{ID: "aaaa" + strings.Repeat("2", 60), Name: "sidecar", Pod: pod}
	for _, c := range []struct {
		name string
		cs   []Container
		want Name
	}{
		{"one Docker container", []Container{{ID: "0123456789abcdef", Name: "api"}}, Name{Name: "api", ID: "0123456789ab"}},
		{"containers sharing a netns: names sorted, IDs in the same order",
			[]Container{{ID: "1111111111111", Name: "web"}, {ID: "0000000000000", Name: "sidecar"}},
			Name{Name: "sidecar,web", ID: "000000000000,111111111111"}},
		{"a container without a name shows its ID", []Container{{ID: "abcdefabcdefabcdef"}}, Name{Name: "abcdefabcdef", ID: "abcdefabcdef"}},
		{"a pod is NAMESPACE/POD, its app containers' IDs, never the sandbox's",
			[]Container{sandbox, web, sidecar}, Name{Name: "shop/web-0", ID: "aaaa22222222,bbbb11111111", Namespace: "shop", Pod: "web-0"}},
		{"a pod whose containers have not started is named by its sandbox", []Container{sandbox},
			Name{Name: "shop/web-0", Namespace: "shop", Pod: "web-0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := DisplayName(c.cs); got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestPodFromDockerLabels: dockershim and cri-dockerd make Docker containers of pods; their
// labels say which pod, and which one is the sandbox.
func TestPodFromDockerLabels(t *testing.T) {
	pause := Container{Name: "k8s_POD_web-0_shop_u1_0", Labels: map[string]string{
		labelPodName: "web-0", labelPodNamespace: "shop", labelPodUID: "u1", labelDockerType: "podsandbox", labelContainerName: "POD"}}
	app := Container{Name: "k8s_web_web-0_shop_u1_0", Labels: map[string]string{
		labelPodName: "web-0", labelPodNamespace: "shop", labelPodUID: "u1", labelDockerType: "container", labelContainerName: "web"}}
	plain := Container{Name: "api", Labels: map[string]string{"com.docker.compose.service": "api"}}
	for _, c := range []*Container{&pause, &app, &plain} {
		c.podFromLabels()
	}
	want := Pod{Namespace: "shop", Name: "web-0", UID: "u1"}
	if pause.Pod != want || !pause.Sandbox {
		t.Errorf("pause: %+v", pause)
	}
	if app.Pod != want || app.Sandbox || app.Name != "web" {
		t.Errorf("app: %+v, want pod %v, name web", app, want)
	}
	if !plain.Pod.IsZero() || plain.Sandbox || plain.Name != "api" {
		t.Errorf("plain: %+v", plain)
	}
}

func TestMatch(t *testing.T) {
	shop := Pod{Namespace: "shop", Name: "web-0"}
	other := Pod{Namespace: "staging", Name: "web-0"}
	all := []Container{
		{ID: "1111aaaa2222bbbb", Name: "api", Up: true},
		{ID: "1111cccc3333dddd", Name: "db", Up: true},
		{ID: "2222eeee4444ffff", Pod: shop, Sandbox: true, Up: true},
		{ID: "3333eeee5555ffff", Name: "web", Pod: shop, Up: true},
		{ID: "4444eeee6666ffff", Pod: other, Sandbox: true, Up: true},
		{ID: "5555eeee7777ffff", Pod: Pod{Namespace: "shop", Name: "cart-0"}, Sandbox: true, Up: true},
	}
	for _, c := range []struct {
		query string
		want  Selector
		err   string
	}{
		{query: "api", want: Selector{ID: "1111aaaa2222bbbb", Name: "api"}},
		{query: "/api", want: Selector{ID: "1111aaaa2222bbbb", Name: "api"}},
		{query: "1111c", want: Selector{ID: "1111cccc3333dddd", Name: "db"}},
		{query: "shop/web-0", want: Selector{Pod: "shop/web-0", Name: "shop/web-0"}},
		{query: "cart-0", want: Selector{Pod: "shop/cart-0", Name: "shop/cart-0"}},
		{query: "3333", want: Selector{Pod: "shop/web-0", Name: "shop/web-0"}},   // an app container's ID selects its pod
		{query: "2222", want: Selector{Pod: "shop/web-0", Name: "shop/web-0"}},   // so does the sandbox's
		{query: "web", err: `no container or pod named or with ID prefix "web"`}, // a container's name inside a pod is not global
		{query: "web-0", err: `pod name "web-0" is in 2 namespaces: shop/web-0, staging/web-0; give NAMESPACE/POD`},
		{query: "1111", err: `ID prefix "1111" matches 2 containers: 1111aaaa2222 (api), 1111cccc3333 (db); give more of the ID or the name`},
		{query: " ", err: "empty container name or ID"},
	} {
		t.Run(c.query, func(t *testing.T) {
			got, err := Match(c.query, all)
			if c.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), c.err) {
					t.Fatalf("Match(%q) = %+v, %v; want error %q", c.query, got, err, c.err)
				}
				return
			}
			c.want.Query = c.query
			if err != nil || got != c.want {
				t.Errorf("Match(%q) = %+v, %v; want %+v", c.query, got, err, c.want)
			}
		})
	}
}

func TestSelectorMatchesAcrossRestarts(t *testing.T) {
	pod := Selector{Pod: "shop/web-0"}
	// A pod recreated by its StatefulSet has new IDs and the same name.
	if !pod.Matches(Container{ID: "new", Pod: Pod{Namespace: "shop", Name: "web-0", UID: "u2"}}) {
		t.Error("pod selector does not match the recreated pod")
	}
	if pod.Matches(Container{ID: "x", Pod: Pod{Namespace: "staging", Name: "web-0"}}) {
		t.Error("pod selector matches a pod of another namespace")
	}
	ct := Selector{ID: "abc"}
	if !ct.Matches(Container{ID: "abc", Name: "renamed"}) || ct.Matches(Container{ID: "abd"}) {
		t.Error("container selector does not go by ID")
	}
}
