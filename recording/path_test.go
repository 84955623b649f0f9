package recording

import (
	"slices"
	"testing"
	"time"
)

// sockets -r prints, per namespace, its last snapshot up to --at, in the order the namespaces
// first appear.
func TestLastSocketsKeepsTheLastSnapshotOfEachNamespaceUpToATime(t *testing.T) {
	snap := func(netns uint32, i int) SocketSnapshot {
		return SocketSnapshot{Netns: netns, Time: at(i), PortRange: [2]int{i, i}}
	}
	r := &Recording{Meta: sampleMeta(), Sockets: []SocketSnapshot{
		snap(webNetns, 1), snap(cliNetns, 2), snap(webNetns, 3), snap(cliNetns, 4), snap(webNetns, 5),
	}}
	f, err := r.Open()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		want  map[uint32]bool
		until int // 0: the end
		got   [][2]uint32
	}{
		{"all", nil, 0, [][2]uint32{{webNetns, 5}, {cliNetns, 4}}},
		{"until 3s", nil, 3, [][2]uint32{{webNetns, 3}, {cliNetns, 2}}},
		{"one namespace", map[uint32]bool{cliNetns: true}, 0, [][2]uint32{{cliNetns, 4}}},
		{"before the first", nil, -1, nil},
	} {
		var until time.Time // the zero time: the end
		if tc.until != 0 {
			until = at(tc.until)
		}
		last, first, err := f.LastSockets(tc.want, until)
		if err != nil {
			t.Fatal(err)
		}
		var got [][2]uint32
		for _, s := range last {
			got = append(got, [2]uint32{s.Netns, uint32(s.PortRange[0])})
		}
		if !slices.Equal(got, tc.got) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.got)
		}
		if !first.Equal(at(1)) {
			t.Errorf("%s: first snapshot at %v, want %v", tc.name, first, at(1))
		}
	}
}
