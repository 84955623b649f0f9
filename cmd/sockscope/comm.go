package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/sockscope/sockscope/loader"
)

// commFlag declares --comm, DTrace's /execname == "node"/: what says what it selects.
func commFlag(fs *pflag.FlagSet, comms *[]string, what string) {
	fs.StringArrayVar(comms, "comm", nil, what+" of processes with this name (as ps -o comm shows it; the kernel keeps 15 bytes of it); repeatable, up to 8; filtered in the kernel")
}

// checkComms checks the names given to --comm.
func checkComms(comms []string) error {
	if len(comms) > loader.MaxCommFilters {
		return usageError{fmt.Sprintf("--comm is given %d times; at most %d", len(comms), loader.MaxCommFilters)}
	}
	for _, c := range comms {
		if c == "" {
			return usageError{"--comm needs a process name, as ps -o comm shows it"}
		}
		if len(c) > 15 {
			return usageError{fmt.Sprintf("--comm %q: the kernel keeps the first 15 bytes of a process name; give %q", c, c[:15])}
		}
	}
	return nil
}
