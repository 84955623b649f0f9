package main

import (
	"strings"
	"testing"
)

// The SQLSTATE of an ErrorResponse body as PostgreSQL 15 sends it when its slots are taken.
func TestSQLState(t *testing.T) {
	fields := func(kv ...string) []byte {
		var b []byte
		for i := 0; i < len(kv); i += 2 {
			b = append(append(append(b, kv[i][0]), kv[i+1]...), 0)
		}
		return append(b, 0)
	}
	for _, tc := range []struct {
		body []byte
		want string
	}{
		{fields("S", "FATAL", "V", "FATAL", "C", "53300", "M", "remaining connection slots are reserved for non-replication superuser connections"), "53300"},
		{fields("S", "FATAL", "C", "28000", "M", "no pg_hba.conf entry"), "28000"},
		{fields("S", "FATAL", "M", "no code"), "unknown"},
		{[]byte("S"), "unknown"},
		{nil, "unknown"},
	} {
		if got := sqlstate(tc.body); got != tc.want {
			t.Errorf("sqlstate(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

func TestBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-addr and -user are required"},
		{[]string{"-addr", "127.0.0.1:5432", "-user", "app"}, "either -leak or -pool"},
		{[]string{"-addr", "127.0.0.1:5432", "-user", "app", "-leak", "-pool", "2"}, "either -leak or -pool"},
		{[]string{"-addr", "127.0.0.1:5432", "-user", "app", "-leak", "-refusals", "0"}, "-refusals must be at least 1"},
		{[]string{"-bogus"}, "flag provided but not defined"},
	} {
		if err := run(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pgload %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
