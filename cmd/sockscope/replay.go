package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/sockscope/sockscope/recording"
)

// maxInflateFlag declares --max-inflate, for every command that reads recordings; parseMaxInflate reads it.
func maxInflateFlag(fs *pflag.FlagSet) *string {
	return fs.String("max-inflate", recording.DefaultBudget.String(), "how much a recording may decompress to: a multiple of its size (64x) or a size (8G); a file that asks for more is refused as a DEFLATE bomb")
}

// parseMaxInflate reads --max-inflate.
func parseMaxInflate(maxInflate string) (recording.Budget, error) {
	b, err := recording.ParseBudget(maxInflate)
	if err != nil {
		return b, usageError{err.Error()}
	}
	return b, nil
}

// openRecording opens a recording (-: standard input) and warns about its clock on stderr.
func openRecording(path string, budget recording.Budget, stderr io.Writer) (*recording.File, io.Closer, error) {
	rec, closer, err := recording.OpenPath(path, budget)
	if err != nil {
		return nil, nil, err
	}
	if w := rec.ClockWarning(path); w != "" {
		fmt.Fprintf(stderr, "sockscope: warning: %s\n", w)
	}
	return rec, closer, nil
}

// replay opens the recording path, selects the namespaces of --container and --netns in it, and
// hands both to show.
func replay(path string, budget recording.Budget, queries, netns []string, stderr io.Writer, show func(*recording.File, map[uint32]bool) error) error {
	rec, closer, err := openRecording(path, budget, stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	only, err := rec.SelectNetns(queries, netns)
	var bad *recording.NetnsArgError
	if errors.As(err, &bad) {
		return usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	return show(rec, only)
}
