package containers

import (
	"slices"
	"testing"
)

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"abc", "abc", 0},
		{"kitten", "sitting", 3},
		{"sitting", "kitten", 3},
		{"flaw", "lawn", 2},
		{"web", "web-1", 2},
		{"nginx", "ngnix", 1}, // adjacent swap
		{"wbe", "web", 1},
		{"api", "apj", 1},
		{"ab", "ba", 1},
		{"abc", "ca", 3}, // optimal string alignment: no edit of a swapped pair (true Damerau gives 2)
		{"ab", "ab", 0},
		{"café", "cafe", 1}, // runes, not bytes
		{"redis", "postgres", 7},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestClosest(t *testing.T) {
	names := []string{"web-1", "web-2", "db", "cache", "webhook", "web-1"}
	for _, tc := range []struct {
		q    string
		n    int
		want []string
	}{
		{"web", 3, []string{"web-1", "web-2", "db"}}, // db is as close as web-1 but does not contain "web"
		{"webho", 2, []string{"webhook", "web-1"}},
		{"db1", 3, []string{"db", "web-1", "web-2"}},
		{"cahce", 1, []string{"cache"}},
		{"x", 10, []string{"db", "cache", "web-1", "web-2", "webhook"}},
	} {
		if got := Closest(tc.q, names, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("Closest(%q, %d) = %q, want %q", tc.q, tc.n, got, tc.want)
		}
	}
}
