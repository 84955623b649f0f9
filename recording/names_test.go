package recording

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

// Containers of the namer tests. web and sidecar share a namespace (a pod, or
// --network container:web); their IDs sort the other way round from their names.
var (
	web     = Container{ID: "1111aaaa2222bbbb3333cccc", Name: "web", Netns: 100, Started: at(0)}
	sidecar = Container{ID: "ffff0000eeee1111dddd2222", Name: "sidecar", Netns: 100, Started: at(0)}
	db      = Container{ID: "3f4e8a1b2c9d7e6f5a4b3c2d", Name: "db", Netns: 200, Started: at(0)}
	migrate = Container{ID: "db12a9b8c7d6e5f4a3b2c1d0", Name: "migrate", Netns: 200, Started: at(0)}
	dbNew   = Container{ID: "db34f0e1d2c3b4a5968778695", Name: "db-new", Netns: 200, Started: at(26)}
	job     = Container{ID: "5555eeee6666ffff7777aaaa", Name: "job", Netns: 300, Started: at(11)}
	old     = Container{ID: "9999dddd8888cccc7777bbbb", Name: "old", Netns: 400, Started: at(0)}
	// A pod: its sandbox names the namespace, its app container starts later.
	webPod  = Container{ID: "77770000aaaa1111bbbb2222", Netns: 500, Started: at(0), Runtime: "containerd", K8sNamespace: "shop", K8sPod: "web-0", PodUID: "u1", Sandbox: true}
	webApp  = Container{ID: "abcdef0123456789abcdef01", Name: "web", Image: "nginx", Netns: 500, Started: at(15), Runtime: "containerd", K8sNamespace: "shop", K8sPod: "web-0", PodUID: "u1"}
	hostPod = Container{ID: "8888000099991111aaaa2222", Name: "agent", Netns: hostNetns, Started: at(0), Runtime: "containerd", K8sNamespace: "kube-system", K8sPod: "agent-x", HostNetwork: true}
)

func stopped(c Container, when time.Time, code int) Container {
	c.Stopped, c.ExitCode = when, code
	return c
}

// history is three containers blocks, at 10 s, 20 s and 30 s.
func history() *Recording {
	return &Recording{
		Meta: Meta{HostNetns: hostNetns, Scope: "all containers"},
		Containers: []Timed[Containers]{
			{at(10), Containers{List: []Container{web, sidecar, db, stopped(migrate, at(8), 0), stopped(old, at(5), 0), webPod, hostPod}}},
			// old is missing from this block, job appears, db stops after migrate did.
			{at(20), Containers{List: []Container{web, sidecar, stopped(db, at(15), 1), stopped(migrate, at(8), 0), job, webPod, webApp, hostPod}}},
			{at(30), Containers{List: []Container{web, sidecar, stopped(db, at(15), 1), stopped(migrate, at(8), 0), dbNew, stopped(job, at(28), 0)}}},
		},
	}
}

func TestNamerLookup(t *testing.T) {
	n := history().Namer()
	cases := []struct {
		name     string
		netns    uint32
		at       time.Time
		wantName string
		wantID   string
		wantOK   bool

		wantPodNs, wantPod string
	}{
		{"shared namespace: names sorted, IDs in the same order", 100, at(12), "sidecar,web", "ffff0000eeee,1111aaaa2222", true, "", ""},
		{"before the first containers block", 100, at(0), "sidecar,web", "ffff0000eeee,1111aaaa2222", true, "", ""},
		{"running container before the first block", 200, at(1), "db", "3f4e8a1b2c9d", true, "", ""},
		{"stopped container keeps naming its namespace", 200, at(25), "db", "3f4e8a1b2c9d", true, "", ""},
		{"the last container to stop names it, not the last listed", 200, at(20), "db", "3f4e8a1b2c9d", true, "", ""},
		{"until another container runs in it", 200, at(35), "db-new", "db34f0e1d2c3", true, "", ""},
		{"at the time of a block, that block", 200, at(30), "db-new", "db34f0e1d2c3", true, "", ""},
		{"a container whose block trails its events", 300, at(12), "job", "5555eeee6666", true, "", ""},
		{"a stopped container in the last block", 300, at(99), "job", "5555eeee6666", true, "", ""},
		{"a container only an earlier block lists", 400, at(25), "old", "9999dddd8888", true, "", ""},
		{"host namespace", hostNetns, at(20), "host", "", true, "", ""},
		{"host namespace before any block", hostNetns, at(0), "host", "", true, "", ""},
		{"a pod: NAMESPACE/POD, its app containers' IDs, never the sandbox's", 500, at(20), "shop/web-0", "abcdef012345", true, "shop", "web-0"},
		{"a pod whose app container has not started yet", 500, at(10), "shop/web-0", "", true, "shop", "web-0"},
		{"a hostNetwork pod never names the host", hostNetns, at(20), "host", "", true, "", ""},
		{"unknown namespace", 999, at(20), "", "", false, "", ""},
		{"namespace 0", 0, at(20), "", "", false, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := n.Lookup(c.netns, c.at)
			if got.Name != c.wantName || got.ID != c.wantID || ok != c.wantOK || got.Namespace != c.wantPodNs || got.Pod != c.wantPod {
				t.Errorf("Lookup(%d, %v) = %+v, %v; want %q, %q (pod %q/%q), %v", c.netns, c.at, got, ok, c.wantName, c.wantID, c.wantPodNs, c.wantPod, c.wantOK)
			}
		})
	}
}

func TestNamerWithoutContainers(t *testing.T) {
	n := (&Recording{Meta: Meta{HostNetns: hostNetns}}).Namer()
	if got, ok := n.Lookup(hostNetns, at(0)); got.Name != "host" || got.ID != "" || !ok {
		t.Errorf("host: %+v, %v", got, ok)
	}
	if got, ok := n.Lookup(100, at(0)); got.Name != "" || ok {
		t.Errorf("netns 100: %+v, %v", got, ok)
	}
	// With no host namespace recorded, namespace 0 is not the host.
	n = (&Recording{}).Namer()
	if got, ok := n.Lookup(0, at(0)); ok {
		t.Errorf("netns 0 named %+v without a host namespace", got)
	}
}

func TestFindNetns(t *testing.T) {
	rec := history()
	cases := []struct {
		query string
		want  []uint32
	}{
		{"web", []uint32{100}},
		{"db", []uint32{200}}, // the name, not the IDs starting with "db"
		{"job", []uint32{300}},
		{"old", []uint32{400}},
		{"ffff", []uint32{100}},
		{"ffff0000eeee1111dddd2222", []uint32{100}},
		{"db3", []uint32{200}},
		{"shop/web-0", []uint32{500}},
		{"web-0", []uint32{500}},  // a pod name found in one namespace
		{"abcdef", []uint32{500}}, // an app container's ID selects its pod
		{"7777", []uint32{500}},   // so does the sandbox's
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			got, err := rec.FindNetns(c.query)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestFindNetnsRefuses(t *testing.T) {
	for _, c := range []struct{ query, want string }{
		{"wbe", `in this recording: no container or pod named or with ID prefix "wbe"; closest running: web, db, job`},
		{"d", `in this recording: ID prefix "d" matches 2 containers: db12a9b8c7d6 (migrate), db34f0e1d2c3 (db-new); give more of the ID or the name`},
	} {
		_, err := history().FindNetns(c.query)
		if err == nil || err.Error() != c.want {
			t.Errorf("FindNetns(%q):\n got  %v\n want %q", c.query, err, c.want)
		}
	}
	_, err := (&Recording{Meta: Meta{Scope: "the host only"}}).FindNetns("web")
	if want := `no container "web" in this recording: it has no containers (recorded the host only)`; err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %q", err, want)
	}
}

// sameContainer compares every field of a Container: a field added to Container and forgotten in
// containerKey would make a change of it look like no change.
func TestContainerKeyHasEveryField(t *testing.T) {
	ct, kt := reflect.TypeFor[Container](), reflect.TypeFor[containerKey]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		if f.Name == "Labels" {
			continue
		}
		if kf, ok := kt.FieldByName(f.Name); !ok || kf.Type != f.Type {
			t.Errorf("containerKey lacks %s %s", f.Name, f.Type)
		}
	}
	if kt.NumField() != ct.NumField()-1 {
		t.Errorf("containerKey has %d fields, Container %d besides Labels", kt.NumField(), ct.NumField()-1)
	}
	a := Container{ID: "x", Labels: map[string]string{"a": "1"}, Stopped: at(1)}
	for _, b := range []Container{{ID: "x", Labels: map[string]string{"a": "2"}, Stopped: at(1)}, {ID: "x", Labels: map[string]string{"a": "1"}, Stopped: at(2)}} {
		if sameContainer(a, b) {
			t.Errorf("%+v and %+v are the same", a, b)
		}
	}
	if !sameContainer(a, Container{ID: "x", Labels: map[string]string{"a": "1"}, Stopped: at(1)}) {
		t.Error("equal containers differ")
	}
}

// A history written as one full list and then changes (what record writes) names every namespace
// at every moment as the same history written as full lists (what older recordings hold).
func TestChangesNameAsFullLists(t *testing.T) {
	full := history()
	changes := &Recording{Meta: full.Meta}
	var prev map[string]Container
	for i, s := range full.Containers {
		cur := map[string]Container{}
		for _, c := range s.Value.List {
			cur[c.ID] = c
		}
		if i == 0 {
			changes.Containers = append(changes.Containers, s)
		} else {
			var diff []Container
			for _, c := range s.Value.List {
				if p, ok := prev[c.ID]; !ok || !sameContainer(p, c) {
					diff = append(diff, c)
				}
			}
			changes.Containers = append(changes.Containers, Timed[Containers]{s.Time, Containers{List: diff, Changes: true}})
		}
		prev = cur
	}
	a, b := full.Namer(), changes.Namer()
	for _, ns := range []uint32{100, 200, 300, 400, 500, hostNetns, 999} {
		for sec := -1; sec <= 40; sec++ {
			na, oka := a.Lookup(ns, at(sec))
			nb, okb := b.Lookup(ns, at(sec))
			// old is gone from the second full list, and stays with changes (which cannot say
			// that it went): either way it names 400, from its block or from an earlier one.
			if na != nb || oka != okb {
				t.Errorf("netns %d at %ds: full lists %+v %v, changes %+v %v", ns, sec, na, oka, nb, okb)
			}
		}
	}
	hf, _ := full.History()
	hc, _ := changes.History()
	if len(hc.versions) >= len(hf.versions)+1 || len(hf.Containers()) != len(hc.Containers()) {
		t.Errorf("versions: full lists %d, changes %d; containers %d, %d", len(hf.versions), len(hc.versions), len(hf.Containers()), len(hc.Containers()))
	}
}
