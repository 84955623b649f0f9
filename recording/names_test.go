package recording

import (
	"slices"
	"strings"
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
			{at(10), Containers{List: []Container{web, sidecar, db, stopped(migrate, at(8), 0), stopped(old, at(5), 0)}}},
			// old is missing from this block, job appears, db stops after migrate did.
			{at(20), Containers{List: []Container{web, sidecar, stopped(db, at(15), 1), stopped(migrate, at(8), 0), job}}},
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
	}{
		{"shared namespace: names sorted, IDs in the same order", 100, at(12), "sidecar,web", "ffff0000eeee,1111aaaa2222", true},
		{"before the first containers block", 100, at(0), "sidecar,web", "ffff0000eeee,1111aaaa2222", true},
		{"running container before the first block", 200, at(1), "db", "3f4e8a1b2c9d", true},
		{"stopped container keeps naming its namespace", 200, at(25), "db", "3f4e8a1b2c9d", true},
		{"the last container to stop names it, not the last listed", 200, at(20), "db", "3f4e8a1b2c9d", true},
		{"until another container runs in it", 200, at(35), "db-new", "db34f0e1d2c3", true},
		{"at the time of a block, that block", 200, at(30), "db-new", "db34f0e1d2c3", true},
		{"a container whose block trails its events", 300, at(12), "job", "5555eeee6666", true},
		{"a stopped container in the last block", 300, at(99), "job", "5555eeee6666", true},
		{"a container only an earlier block lists", 400, at(25), "old", "9999dddd8888", true},
		{"host namespace", hostNetns, at(20), "host", "", true},
		{"host namespace before any block", hostNetns, at(0), "host", "", true},
		{"unknown namespace", 999, at(20), "", "", false},
		{"namespace 0", 0, at(20), "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name, id, ok := n.Lookup(c.netns, c.at)
			if name != c.wantName || id != c.wantID || ok != c.wantOK {
				t.Errorf("Lookup(%d, %v) = %q, %q, %v; want %q, %q, %v", c.netns, c.at, name, id, ok, c.wantName, c.wantID, c.wantOK)
			}
		})
	}
}

func TestNamerWithoutContainers(t *testing.T) {
	n := (&Recording{Meta: Meta{HostNetns: hostNetns}}).Namer()
	if name, id, ok := n.Lookup(hostNetns, at(0)); name != "host" || id != "" || !ok {
		t.Errorf("host: %q, %q, %v", name, id, ok)
	}
	if name, id, ok := n.Lookup(100, at(0)); name != "" || id != "" || ok {
		t.Errorf("netns 100: %q, %q, %v", name, id, ok)
	}
	// With no host namespace recorded, namespace 0 is not the host.
	n = (&Recording{}).Namer()
	if name, _, ok := n.Lookup(0, at(0)); ok {
		t.Errorf("netns 0 named %q without a host namespace", name)
	}
}

func TestFindContainers(t *testing.T) {
	rec := history()
	cases := []struct {
		query string
		want  []Container // sorted by ID
	}{
		{"web", []Container{web}},
		{"db", []Container{stopped(db, at(15), 1)}}, // the name, not the IDs starting with "db"; as last seen
		{"job", []Container{stopped(job, at(28), 0)}},
		{"old", []Container{stopped(old, at(5), 0)}},
		{"ffff", []Container{sidecar}},
		{"ffff0000eeee1111dddd2222", []Container{sidecar}},
		{"db3", []Container{dbNew}},
		{"d", []Container{stopped(migrate, at(8), 0), dbNew}}, // every ID with the prefix
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			got, err := rec.FindContainers(c.query)
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(got, func(a, b Container) int { return strings.Compare(a.ID, b.ID) })
			if len(got) != len(c.want) {
				t.Fatalf("got %d containers %+v, want %d", len(got), got, len(c.want))
			}
			for i := range got {
				if got[i].ID != c.want[i].ID || got[i].Name != c.want[i].Name || !got[i].Stopped.Equal(c.want[i].Stopped) ||
					got[i].ExitCode != c.want[i].ExitCode || got[i].Netns != c.want[i].Netns {
					t.Errorf("container %d: got %+v, want %+v", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestFindContainersUnknown(t *testing.T) {
	_, err := history().FindContainers("wbe")
	if err == nil {
		t.Fatal("found a container named wbe")
	}
	if want := `no container "wbe" in this recording; closest: web, db, job`; err.Error() != want {
		t.Errorf("got %q\nwant %q", err, want)
	}

	_, err = (&Recording{Meta: Meta{Scope: "the host only"}}).FindContainers("web")
	if want := `no container "web" in this recording: it has no containers (recorded the host only)`; err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %q", err, want)
	}
}
