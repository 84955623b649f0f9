package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockscope/sockscope/internal/testenv"
)

var pgloadBin string

func init() { extraBins["pgload"] = &pgloadBin }

// postgres is a PostgreSQL server from Debian's packages running in a netns of the test, on
// 127.0.0.1:5432 there, and on a unix socket in its directory for the superuser's psql.
type postgres struct {
	bin, dir string
	cmd      *exec.Cmd
}

// startPostgres initialises a cluster in a directory of its own (owned by postgres, which it
// must run as) and starts it in ns with a small connection limit: maxConns in all, reserved of
// them for superusers. A role app, not a superuser, is what clients log in as.
func startPostgres(t *testing.T, ns netns, maxConns, reserved int) *postgres {
	t.Helper()
	requireTracing(t)
	bin := testenv.Postgres(t)
	testenv.Command(t, "setpriv")
	dir, err := os.MkdirTemp("", "sockscope-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sh(t, "chown", "postgres:postgres", dir)
	asPostgres := []string{"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"}
	sh(t, asPostgres[0], append(asPostgres[1:], filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync")...)
	args := append([]string{"netns", "exec", ns.name}, asPostgres...)
	args = append(args, filepath.Join(bin, "postgres"), "-D", filepath.Join(dir, "data"),
		"-c", "listen_addresses=127.0.0.1", "-c", "port=5432", "-c", "unix_socket_directories="+dir,
		"-c", fmt.Sprintf("max_connections=%d", maxConns), "-c", fmt.Sprintf("superuser_reserved_connections=%d", reserved),
		"-c", "fsync=off")
	pg := &postgres{bin: bin, dir: dir, cmd: exec.Command("ip", args...)}
	log, err := os.Create(filepath.Join(t.TempDir(), "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	pg.cmd.Stdout, pg.cmd.Stderr = log, log
	if err := pg.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pg.cmd.Process.Signal(syscall.SIGINT) // fast shutdown: ends every backend
		pg.cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for exec.Command(filepath.Join(bin, "pg_isready"), "-q", "-h", dir, "-p", "5432").Run() != nil {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("postgres did not get ready within 30s:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pg.psql(t, "CREATE ROLE app LOGIN")
	return pg
}

// psql runs one statement as the superuser over the unix socket (a reserved slot, and no TCP
// connection for sockscope to see) and returns its unaligned output.
func (pg *postgres) psql(t *testing.T, sql string) string {
	t.Helper()
	return strings.TrimSpace(sh(t, filepath.Join(pg.bin, "psql"), "-h", pg.dir, "-p", "5432", "-U", "postgres", "-d", "postgres", "-Atc", sql))
}

// clients is the server's own count of TCP client connections.
func (pg *postgres) clients(t *testing.T) int {
	t.Helper()
	out := pg.psql(t, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND client_addr IS NOT NULL")
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("count of clients: %q", out)
	}
	return n
}

// pgloadResult is pgload's summary line.
type pgloadResult struct {
	Pid     int            `json:"pid"`
	Held    int            `json:"held"`
	Refused int            `json:"refused"`
	Errors  map[string]int `json:"errors"`
	Queries int            `json:"queries"`
}

// pgload runs pgload in ns against the server and returns its summary, printed once it has
// done its connects; it then holds its connections until the test ends.
func pgload(t *testing.T, ns netns, args ...string) pgloadResult {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name, pgloadBin, "-addr", "127.0.0.1:5432", "-user", "app"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	var r pgloadResult
	if err != nil || json.Unmarshal([]byte(line), &r) != nil {
		t.Fatalf("pgload %v: %q, %v", args, line, err)
	}
	return r
}

// pgRun is what pgIncident saw.
type pgRun struct {
	ns             netns
	client         pgloadResult
	clients        int // the server's count while the client held its connections
	live, recorded []findingJSON
}

// pgIncident runs a PostgreSQL client in a fresh netns while sockscope records it and diagnoses
// it live.
func pgIncident(t *testing.T, maxConns, reserved int, client ...string) pgRun {
	t.Helper()
	ns := newNetns(t)
	pg := startPostgres(t, ns, maxConns, reserved)
	rec, file := startRecord(t, "--netns", ns.path)
	live := startAttached(t, nil, "diagnose", "--netns", ns.path, "--duration", "10s", "--interval", "1s", "-o", "json")
	time.Sleep(1500 * time.Millisecond) // snapshots before the first connection
	r := pgload(t, ns, client...)
	clients := pg.clients(t)
	res := live.wait(t) // the connections stay held through the watch
	if res.code != 0 {
		t.Fatalf("live diagnose: exit %d\n%s", res.code, res.stderr)
	}
	stopRecord(t, rec)
	return pgRun{ns, r, clients, parseFindings(t, res.stdout), diagnoseFile(t, file)}
}

// Incident 1 as it is met: a pool that is not a pool opens a connection to PostgreSQL every
// 100 ms and never closes one, until the server's max_connections turns it away ("sorry, too
// many clients already", SQLSTATE 53300). Live and from a recording, diagnose finds the leak at
// the ceiling the server itself counts, with every refusal the client saw.
func TestDiagnoseLeakThatHitsTheConnectionLimit(t *testing.T) {
	const maxConns, reserved, refusals = 20, 3, 5
	run := pgIncident(t, maxConns, reserved, "-leak", "-refusals", strconv.Itoa(refusals), "-every", "100ms")
	r, clients := run.client, run.clients
	if r.Refused != refusals || len(r.Errors) != 1 || clients != maxConns-reserved || r.Held != clients {
		t.Fatalf("pgload held %d and was refused %d times (errors %v); the server counted %d clients, want %d",
			r.Held, r.Refused, r.Errors, clients, maxConns-reserved)
	}
	want := map[string]float64{"from": 0, "ceiling": float64(clients), "turned_away": float64(r.Refused), "failed": 0, "opened": float64(clients + r.Refused)}
	for what, fs := range map[string][]findingJSON{"live": run.live, "recorded": run.recorded} {
		t.Run(what, func(t *testing.T) {
			assertFinding(t, fs, "leak_at_limit", run.ns.name, want)
			for _, s := range []string{fmt.Sprintf("pgload (pid %d, %d sockets)", r.Pid, clients), fmt.Sprintf("postgres (%d processes", clients)} {
				if !strings.Contains(strings.Join(fs[0].Evidence, "\n"), s) {
					t.Errorf("the evidence does not name %q:\n%s", s, strings.Join(fs[0].Evidence, "\n"))
				}
			}
		})
	}
}

// The same server and client code, as a pool: five connections, reused for queries.
func TestDiagnoseWellBehavedPoolIsNoFinding(t *testing.T) {
	const pool = 5
	run := pgIncident(t, 20, 3, "-pool", strconv.Itoa(pool), "-queries", "30", "-every", "100ms")
	if r := run.client; r.Held != pool || r.Queries != 30 || run.clients != pool {
		t.Fatalf("pgload held %d and ran %d queries; the server counted %d clients", r.Held, r.Queries, run.clients)
	}
	for what, fs := range map[string][]findingJSON{"live": run.live, "recorded": run.recorded} {
		if len(fs) != 0 {
			t.Errorf("%s: a pool of %d is no finding, got %+v", what, pool, fs)
		}
	}
}

// A server that accepts and closes at once, N times: one server_refusal, with exactly N.
func TestDiagnoseServerThatClosesAtOnce(t *testing.T) {
	requireTracing(t)
	const n = 40
	ns := newNetns(t)
	srv := ns.serve(t, "-addr", "127.0.0.1:8080", "-close-first", "-n", strconv.Itoa(n))
	rec, file := startRecord(t, "--netns", ns.path)
	live := startAttached(t, nil, "diagnose", "--netns", ns.path, "--duration", "4s", "--interval", "1s", "-o", "json")
	if c := ns.tcpload(t, "connect", "-addr", "127.0.0.1:8080", "-n", strconv.Itoa(n), "-close-first=server"); c.OK != n {
		t.Fatalf("tcpload connect: %+v", c)
	}
	srv.waitAccepted(t, n)
	ns.settle(t)
	res := live.wait(t)
	if res.code != 0 {
		t.Fatalf("live diagnose: exit %d\n%s", res.code, res.stderr)
	}
	stopRecord(t, rec)
	want := map[string]float64{"closed_by_server": n, "established": n}
	assertFinding(t, parseFindings(t, res.stdout), "server_refusal", ns.name, want)
	assertFinding(t, diagnoseFile(t, file), "server_refusal", ns.name, want)
}
