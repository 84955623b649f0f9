package events

import (
	"strconv"
	"strings"
	"syscall"
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
	if int(e) < len(errnoNames) && errnoNames[e] != "" {
		return errnoNames[e]
	}
	return "errno " + strconv.Itoa(int(e))
}

// The errnos a connect() can end with, and the common ones around them (asm-generic/errno*.h,
// the same numbers on x86_64 and arm64).
var errnoNames = [...]string{
	1:   "EPERM",
	4:   "EINTR",
	9:   "EBADF",
	11:  "EAGAIN",
	12:  "ENOMEM",
	13:  "EACCES",
	14:  "EFAULT",
	22:  "EINVAL",
	23:  "ENFILE",
	24:  "EMFILE",
	32:  "EPIPE",
	88:  "ENOTSOCK",
	97:  "EAFNOSUPPORT",
	98:  "EADDRINUSE",
	99:  "EADDRNOTAVAIL",
	100: "ENETDOWN",
	101: "ENETUNREACH",
	103: "ECONNABORTED",
	104: "ECONNRESET",
	105: "ENOBUFS",
	106: "EISCONN",
	110: "ETIMEDOUT",
	111: "ECONNREFUSED",
	112: "EHOSTDOWN",
	113: "EHOSTUNREACH",
	114: "EALREADY",
	115: "EINPROGRESS",
	125: "ECANCELED",
}
