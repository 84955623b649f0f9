package recorder

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/sockscope/sockscope/loader/syscalls"
)

// fill sets every field of v, however deep, to a value of its own: a field the conversions
// forget then shows as a difference.
func fill(v reflect.Value, n *uint64) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		fallthrough
	case reflect.Array:
		for i := range v.Len() {
			fill(v.Index(i), n)
		}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		*n++
		v.SetUint(*n)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		*n++
		v.SetInt(int64(*n))
	case reflect.String:
		*n++
		v.SetString("comm-or-path-" + string(rune('a'+*n%26)))
	default:
		panic("fill: " + v.Type().String())
	}
}

// TestRecordedSyscallCountsAreWhatTheRecorderWroteBefore converts the loader's syscall counts to
// the recording's and back, every field filled: the recording's JSON must be byte for byte what
// recorders wrote before the recording had types of its own (then the JSON of the loader's
// struct, whose drops were a positional [3]uint64 beside OverBudget), and the round trip must
// lose nothing.
func TestRecordedSyscallCountsAreWhatTheRecorderWroteBefore(t *testing.T) {
	var full syscalls.Snapshot
	var n uint64
	fill(reflect.ValueOf(&full).Elem(), &n)
	for _, tc := range []struct {
		name   string
		snap   syscalls.Snapshot
		before string
	}{
		{"every field set", full, `{"Counts":[{"Netns":1,"Tgid":2,"Nr":3,"Comm":"comm-or-path-e","Count":5,"Errors":6,"LatTotal":7,"LatMax":8},` +
			`{"Netns":9,"Tgid":10,"Nr":11,"Comm":"comm-or-path-m","Count":13,"Errors":14,"LatTotal":15,"LatMax":16}],` +
			`"Errors":[{"Netns":17,"Tgid":18,"Nr":19,"Comm":"comm-or-path-u","Errno":21,"Count":22},{"Netns":23,"Tgid":24,"Nr":25,"Comm":"comm-or-path-a","Errno":27,"Count":28}],` +
			`"Paths":[{"Netns":29,"Tgid":30,"Nr":31,"Comm":"comm-or-path-g","Path":"comm-or-path-h","Count":34},{"Netns":35,"Tgid":36,"Nr":37,"Comm":"comm-or-path-m","Path":"comm-or-path-n","Count":40}],` +
			`"Dropped":[41,42,43],"OverBudget":44}`},
		{"nothing counted yet", syscalls.Snapshot{}, `{"Counts":null,"Errors":null,"Paths":null,"Dropped":[0,0,0]}`},
		{"empty tables", syscalls.Snapshot{Counts: []syscalls.Count{}, Errors: []syscalls.Errors{}, Paths: []syscalls.PathCount{}},
			`{"Counts":[],"Errors":[],"Paths":[],"Dropped":[0,0,0]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := RecordedSyscalls(tc.snap)
			now, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if string(now) != tc.before {
				t.Errorf("recorded as\n %s\nrecorders wrote\n %s", now, tc.before)
			}
			if back := ReplayedSyscalls(&rec); !reflect.DeepEqual(back, tc.snap) {
				t.Errorf("replayed as\n %+v\nrecorded\n %+v", back, tc.snap)
			}
		})
	}
}
