package recording

import (
	"encoding/json"
	"testing"
)

// TestDropCountersReadAsThePositionalArrayDid decodes the Dropped array as encoding/json decoded
// the [3]uint64 recorders wrote: short arrays padded with zeros, extra counters ignored, null
// and a missing field zero.
func TestDropCountersReadAsThePositionalArrayDid(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SyscallDrops
	}{
		{`{"Dropped":[4,5,6]}`, SyscallDrops{CountsFull: 4, ErrorsFull: 5, PathsFull: 6}},
		{`{"Dropped":[4]}`, SyscallDrops{CountsFull: 4}},
		{`{"Dropped":[4,5,6,7]}`, SyscallDrops{CountsFull: 4, ErrorsFull: 5, PathsFull: 6}},
		{`{"Dropped":[]}`, SyscallDrops{}},
		{`{"Dropped":null}`, SyscallDrops{}},
		{`{}`, SyscallDrops{}},
		{`{"dropped":[1,2,3]}`, SyscallDrops{CountsFull: 1, ErrorsFull: 2, PathsFull: 3}}, // keys match in any case, as they did
	} {
		var s SyscallCounts
		if err := json.Unmarshal([]byte(tc.in), &s); err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if s.Dropped != tc.want {
			t.Errorf("%s: Dropped = %+v, want %+v", tc.in, s.Dropped, tc.want)
		}
	}
	for _, in := range []string{`{"Dropped":"3"}`, `{"Dropped":{"CountsFull":3}}`, `{"Dropped":[-1]}`, `{"Dropped":[1.5]}`} {
		var s SyscallCounts
		if err := json.Unmarshal([]byte(in), &s); err == nil {
			t.Errorf("%s: decoded as %+v, want an error", in, s.Dropped)
		}
	}
}
