// Command pgload is a PostgreSQL client for sockscope's incident tests: it speaks the startup
// protocol (version 3.0, trust authentication) over TCP and holds the connections it makes.
//
//	pgload -addr IP:PORT -user U [-db D] -leak -refusals N [-every D]
//	pgload -addr IP:PORT -user U [-db D] -pool N -queries Q [-every D]
//
// -leak is the pool that is not a pool: every -every it opens one more connection and never
// closes it, until the server has turned N of them away; a refused attempt is closed as a driver
// closes it, right after reading the server's error. -pool opens N connections once and runs Q
// queries over them, one every -every. Either way it then prints one JSON line
// ({"held":H,"refused":R,"errors":{"SQLSTATE":n},"queries":Q}) and holds the connections until
// SIGTERM or SIGINT. On an error it writes one line to stderr and exits with status 1.
//
// Run it only against loopback inside a network namespace of your own.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type summary struct {
	Pid     int            `json:"pid"`
	Held    int            `json:"held"`
	Refused int            `json:"refused"` // SQLSTATE 53300: too many connections
	Errors  map[string]int `json:"errors"`  // every error the server answered a startup with, by SQLSTATE
	Queries int            `json:"queries"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pgload: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("pgload", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", "", "server address: IP:PORT")
	user := fs.String("user", "", "role to log in as (trust authentication)")
	db := fs.String("db", "postgres", "database")
	leak := fs.Bool("leak", false, "open a connection every -every and never close it, until -refusals were refused")
	refusals := fs.Int("refusals", 5, "with -leak: stop trying after this many refusals")
	pool := fs.Int("pool", 0, "open this many connections once and reuse them")
	queries := fs.Int("queries", 0, "with -pool: run this many queries over the pool")
	every := fs.Duration("every", 100*time.Millisecond, "pause between connects (-leak) or queries (-pool)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || *user == "" {
		return errors.New("-addr and -user are required")
	}
	if *leak == (*pool > 0) {
		return errors.New("give either -leak or -pool N")
	}
	if *refusals < 1 || *every <= 0 || *queries < 0 {
		return errors.New("-refusals must be at least 1, -every positive, -queries not negative")
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	s := summary{Pid: os.Getpid(), Errors: map[string]int{}}
	var held []*conn
	if *leak {
		for s.Refused < *refusals {
			c, code, err := startup(*addr, *user, *db)
			switch {
			case err != nil:
				return err
			case code != "":
				s.Errors[code]++
				if code == "53300" {
					s.Refused++
				}
			default:
				held = append(held, c)
			}
			time.Sleep(*every)
		}
	} else {
		for range *pool {
			c, code, err := startup(*addr, *user, *db)
			if err != nil {
				return err
			}
			if code != "" {
				return fmt.Errorf("the server refused a pool connection with SQLSTATE %s", code)
			}
			held = append(held, c)
		}
		for i := range *queries {
			if err := held[i%len(held)].query("SELECT 1"); err != nil {
				return err
			}
			s.Queries++
			time.Sleep(*every)
		}
	}
	s.Held = len(held)
	b, _ := json.Marshal(s)
	fmt.Println(string(b))
	<-sigs
	for _, c := range held {
		c.nc.Close()
	}
	return nil
}

type conn struct {
	nc net.Conn
	r  *bufio.Reader
}

// startup connects and logs in. It returns the connection when the server is ready for queries,
// or the SQLSTATE of the error it answered with (the connection then closed).
func startup(addr, user, db string) (*conn, string, error) {
	nc, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return nil, "", err
	}
	c := &conn{nc: nc, r: bufio.NewReader(nc)}
	var body []byte
	body = binary.BigEndian.AppendUint32(body, 3<<16) // protocol 3.0
	for _, kv := range []string{"user", user, "database", db, "application_name", "pgload"} {
		body = append(append(body, kv...), 0)
	}
	body = append(body, 0)
	msg := binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))
	if _, err := nc.Write(append(msg, body...)); err != nil {
		nc.Close()
		return nil, "", fmt.Errorf("send startup to %s: %w", addr, err)
	}
	for {
		typ, payload, err := c.read()
		if err != nil {
			nc.Close()
			return nil, "", fmt.Errorf("startup with %s: %w", addr, err)
		}
		switch typ {
		case 'R':
			if len(payload) < 4 || binary.BigEndian.Uint32(payload) != 0 {
				nc.Close()
				return nil, "", fmt.Errorf("%s asks for a password: pgload supports trust authentication only", addr)
			}
		case 'E':
			nc.Close()
			return nil, sqlstate(payload), nil
		case 'Z':
			return c, "", nil
		}
	}
}

// query runs one simple query and reads up to ReadyForQuery.
func (c *conn) query(q string) error {
	msg := append([]byte{'Q'}, binary.BigEndian.AppendUint32(nil, uint32(4+len(q)+1))...)
	if _, err := c.nc.Write(append(append(msg, q...), 0)); err != nil {
		return fmt.Errorf("query: %w", err)
	}
	for {
		typ, payload, err := c.read()
		if err != nil {
			return fmt.Errorf("query: %w", err)
		}
		switch typ {
		case 'E':
			return fmt.Errorf("query %q: SQLSTATE %s", q, sqlstate(payload))
		case 'Z':
			return nil
		}
	}
}

func (c *conn) read() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n > 1<<20 {
		return 0, nil, fmt.Errorf("message %q of length %d", hdr[0], n)
	}
	payload := make([]byte, n-4)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

// sqlstate is the C field of an ErrorResponse.
func sqlstate(p []byte) string {
	for len(p) > 1 {
		code := p[0]
		end := strings.IndexByte(string(p[1:]), 0)
		if end < 0 {
			break
		}
		if code == 'C' {
			return string(p[1 : 1+end])
		}
		p = p[2+end:]
	}
	return "unknown"
}
