package diagnose

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"

	"github.com/sockscope/sockscope/events"
)

// Print writes the report to w as text, or as one JSON document. It is made whole before the
// first byte is written, and a reader that goes away ends it quietly.
func Print(w io.Writer, r *Report, asJSON bool) error {
	var out bytes.Buffer
	if asJSON {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		out.Write(append(b, '\n'))
	} else if err := WriteText(&out, r); err != nil {
		return err
	}
	return events.WriteAll(w, out.Bytes())
}

// PrintFindings writes the findings to w as text, or as JSON lines, one finding per line.
func PrintFindings(w io.Writer, findings []Finding, asJSON bool) error {
	var out bytes.Buffer
	write := WriteFindings
	if asJSON {
		write = WriteFindingsJSON
	}
	if err := write(&out, findings); err != nil {
		return err
	}
	return events.WriteAll(w, out.Bytes())
}

// WriteHTMLFile writes the report as an HTML page to path, through a temporary file, so that a
// file already there is replaced only by a complete page.
func WriteHTMLFile(path string, r *Report) error {
	var page bytes.Buffer
	if err := WriteHTML(&page, r); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(page.Bytes()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	os.Chmod(tmp.Name(), 0o644)
	return os.Rename(tmp.Name(), path)
}
