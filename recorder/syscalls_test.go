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
// the recording's and back: the recording's JSON must be byte for byte the JSON of the loader's
// struct that recorders wrote before the recording had types of its own, every field filled.
func TestRecordedSyscallCountsAreWhatTheRecorderWroteBefore(t *testing.T) {
	var full syscalls.Snapshot
	var n uint64
	fill(reflect.ValueOf(&full).Elem(), &n)
	for _, tc := range []struct {
		name string
		snap syscalls.Snapshot
	}{
		{"every field set", full},
		{"nothing counted yet", syscalls.Snapshot{}},
		{"empty tables", syscalls.Snapshot{Counts: []syscalls.Count{}, Errors: []syscalls.Errors{}, Paths: []syscalls.PathCount{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := json.Marshal(tc.snap)
			if err != nil {
				t.Fatal(err)
			}
			rec := RecordedSyscalls(tc.snap)
			now, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if string(now) != string(before) {
				t.Errorf("recorded as\n %s\nthe loader's struct was\n %s", now, before)
			}
			if back := ReplayedSyscalls(&rec); !reflect.DeepEqual(back, tc.snap) {
				t.Errorf("replayed as\n %+v\nrecorded\n %+v", back, tc.snap)
			}
		})
	}
}
