package loader

import (
	"bytes"
	"errors"
	"testing"
)

// sockscope version lines the features up under the longest name, each with what it lacks.
func TestWriteFeaturesAlignsNamesAndSaysWhatIsMissing(t *testing.T) {
	var b bytes.Buffer
	WriteFeatures(&b, []Feature{
		{Name: "BTF"},
		{Name: "map walks (bpf_for_each_map_elem)", Err: errors.New("needs Linux 5.13")},
	})
	want := "  BTF                                yes\n" +
		"  map walks (bpf_for_each_map_elem)  no (needs Linux 5.13)\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
