package benchkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// TransitionsPerConn is what one storm connection makes: client CLOSE->SYN_SENT->ESTABLISHED->
// CLOSE_WAIT->LAST_ACK->CLOSE, server LISTEN->SYN_RECV->ESTABLISHED->FIN_WAIT1->FIN_WAIT2->CLOSE.
// Each storm's listener adds 2 more: CLOSE->LISTEN and LISTEN->CLOSE.
const TransitionsPerConn = 10

// StallMS is the slowest single storm connection that still counts as normal. A loopback
// connection takes tens of µs; one taking this long means the storm's CPU was taken away (other
// work pinned to the same CPU, a busy machine) and the round's rate is not comparable.
const StallMS = 200

// StormResult is `tcpload storm`'s summary line.
type StormResult struct {
	Connections int64            `json:"connections"`
	Seconds     float64          `json:"seconds"`
	PerSecond   float64          `json:"per_second"`
	Total       int64            `json:"total"`
	Errors      map[string]int64 `json:"errors"`
	MaxConnMS   float64          `json:"max_conn_ms"`
	// CPUMicros is the storm process's own CPU (user and system, softirq work that interrupted it
	// included) over its whole run, from its rusage; not part of tcpload's line.
	CPUMicros float64 `json:"-"`
}

// CPUPerConn is the storm's CPU per connection in µs; 0 when unknown.
func (s StormResult) CPUPerConn() float64 {
	if s.Total == 0 {
		return 0
	}
	return s.CPUMicros / float64(s.Total)
}

// RunStorm runs one `tcpload storm` on port in the network namespace ns, pinned with taskset
// to the CPU list cpu (unless "none").
func RunStorm(tcpload, ns, cpu string, port int, duration, warmup time.Duration) (StormResult, error) {
	args := []string{"netns", "exec", ns}
	if cpu != "none" {
		args = append(args, "taskset", "-c", cpu)
	}
	args = append(args, tcpload, "storm", "-port", strconv.Itoa(port),
		"-duration", duration.String(), "-warmup", warmup.String())
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	p, err := StartProc("tcpload storm", cmd)
	if err != nil {
		return StormResult{}, err
	}
	if err := p.Wait(warmup + duration + 30*time.Second); err != nil {
		return StormResult{}, fmt.Errorf("tcpload storm: %v: %s", err, LastLine(stderr.String()))
	}
	res, err := parseStorm(stdout.String())
	if ru := p.Rusage(); ru != nil {
		res.CPUMicros = float64(ru.Utime.Sec*1e6+ru.Utime.Usec) + float64(ru.Stime.Sec*1e6+ru.Stime.Usec)
	}
	return res, err
}

func parseStorm(out string) (StormResult, error) {
	var res StormResult
	line := LastLine(out)
	if err := json.Unmarshal([]byte(line), &res); err != nil || res.Seconds <= 0 {
		return res, fmt.Errorf("tcpload storm: unexpected output %q", line)
	}
	return res, nil
}
