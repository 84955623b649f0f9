// Package events is the vocabulary every capability's codec shares (events/trace,
// events/sockets, events/syscalls): TCP states, errno and syscall names, the name of a namespace,
// the kernel's clock, endpoints, and the output helpers that keep every line printable.
package events

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// State is a TCP state as the kernel numbers it (include/net/tcp_states.h).
type State uint8

var stateNames = [...]string{
	1:  "ESTABLISHED",
	2:  "SYN_SENT",
	3:  "SYN_RECV",
	4:  "FIN_WAIT1",
	5:  "FIN_WAIT2",
	6:  "TIME_WAIT",
	7:  "CLOSE",
	8:  "CLOSE_WAIT",
	9:  "LAST_ACK",
	10: "LISTEN",
	11: "CLOSING",
	12: "NEW_SYN_RECV",
	13: "BOUND_INACTIVE",
}

// TCP states by name, for code that needs one.
const (
	StateEstablished State = 1
	StateSynSent     State = 2
	StateSynRecv     State = 3
	StateFinWait1    State = 4
	StateFinWait2    State = 5
	StateTimeWait    State = 6
	StateClose       State = 7
	StateCloseWait   State = 8
	StateLastAck     State = 9
	StateListen      State = 10
	StateClosing     State = 11
)

// String returns the state's name, "" for 0 (no state: a connect() that failed before any
// transition), or the number for states this table does not know.
func (s State) String() string {
	if int(s) < len(stateNames) && (s == 0 || stateNames[s] != "") {
		return stateNames[s]
	}
	return strconv.Itoa(int(s))
}

// ParseState accepts a state name in any case, with or without underscores or dashes
// (TIME_WAIT, time-wait, timewait) and SYN_RECV's alias SYN_RECEIVED.
func ParseState(name string) (State, bool) {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToUpper(s))
	}
	n := norm(name)
	if n == "SYNRECEIVED" {
		n = "SYNRECV"
	}
	for i, s := range stateNames {
		if s != "" && norm(s) == n {
			return State(i), true
		}
	}
	return 0, false
}

// StateNames lists the valid state names, for usage errors.
func StateNames() []string {
	var out []string
	for _, s := range stateNames {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ErrnoName returns the errno's symbolic name (ECONNREFUSED), "" for 0, or "errno N".
func ErrnoName(e syscall.Errno) string {
	if e == 0 {
		return ""
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	if n, ok := kernelErrnos[e]; ok {
		return n
	}
	return "errno " + strconv.Itoa(int(e))
}

// Errnos the kernel uses internally, which a syscall tracer sees on the way out before the
// kernel restarts the call (include/linux/errno.h).
var kernelErrnos = map[syscall.Errno]string{
	512: "ERESTARTSYS",
	513: "ERESTARTNOINTR",
	514: "ERESTARTNOHAND",
	515: "ENOIOCTLCMD",
	516: "ERESTART_RESTARTBLOCK",
}
