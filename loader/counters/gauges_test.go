package counters

import (
	"strings"
	"testing"
)

// The time-wait count comes from the TCP line of a namespace's sockstat, whatever comes around it.
func TestSockstatTimeWaitCount(t *testing.T) {
	cases := []struct {
		in   string
		want int
		ok   bool
	}{
		{"sockets: used 12\nTCP: inuse 1 orphan 0 tw 3 alloc 1 mem 90\nUDP: inuse 0 mem 0\n", 3, true},
		{"TCP: inuse 0 orphan 2 tw 80123 alloc 5 mem 1\n", 80123, true},
		{"TCP6: inuse 1\nTCP: tw 0\n", 0, true},
		{"sockets: used 12\nUDP: inuse 0 mem 0\n", 0, false},
		{"TCP: inuse 1 orphan 0 tw\n", 0, false},
		{"TCP: inuse 1 orphan 0 tw many alloc 1\n", 0, false},
	}
	for _, c := range cases {
		got, err := parseSockstatTW(strings.NewReader(c.in))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%q: %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}
