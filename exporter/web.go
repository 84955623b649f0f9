package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/sockscope/sockscope/events"
)

// HealthPath answers probes (kubelet, systemd, load balancers) without reading the kernel.
const HealthPath = "/-/healthy"

// WebOptions are the exporter's HTTP side, as its --web.* flags set it.
type WebOptions struct {
	Path        string // the metrics' path
	Listen      string // the address ln listens on, for the web configuration's checks
	ConfigFile  string // the exporter-toolkit web configuration (TLS, basic auth); "" for none
	MaxRequests int    // scrapes served at once; the others get 503 at once
	// Every phase of a connection has a deadline: a client that connects, scrapes once and stays
	// idle is closed after IdleTimeout, one that sends its request slowly after ReadTimeout;
	// neither keeps a file descriptor for ever.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	Version                                string // sockscope's, on the landing page
	Ready                                  func() // called once the server is set up, before it serves
}

// Serve serves coll's metrics, with the Go runtime's and the process's, on ln until ctx ends
// (then it shuts the server down within 5 s) or the server fails. A series the registry refuses
// is said on stderr, once.
func Serve(ctx context.Context, ln net.Listener, coll *Collector, o WebOptions, stderr io.Writer) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(coll, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	// At most MaxRequests scrapes at once, as node_exporter does: the others get 503 at once
	// instead of queueing behind the kernel walks (promhttp_metric_handler_requests_total counts
	// them by code).
	mux.Handle(o.Path, promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: o.MaxRequests, ErrorLog: &onceLog{w: stderr}, Registry: reg,
	})))
	mux.HandleFunc(HealthPath, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "sockscope",
		Description: "TCP life and syscall hotspots of the host and its containers, counted in the kernel with eBPF",
		Version:     o.Version,
		Links:       []web.LandingLinks{{Address: o.Path, Text: "Metrics"}, {Address: HealthPath, Text: "Health"}},
	})
	if err != nil {
		return err
	}
	if o.Path != "/" {
		mux.Handle("/", landing)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: min(10*time.Second, o.ReadTimeout), ReadTimeout: o.ReadTimeout,
		WriteTimeout: o.WriteTimeout, IdleTimeout: o.IdleTimeout}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	webFlags := &web.FlagConfig{WebListenAddresses: &[]string{o.Listen}, WebConfigFile: &o.ConfigFile, WebSystemdSocket: new(bool)}
	served := make(chan error, 1)
	go func() { served <- web.Serve(ln, srv, webFlags, logger) }()
	if o.Ready != nil {
		o.Ready()
	}
	select {
	case err = <-served:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = srv.Shutdown(shut)
		cancel()
	}
	return err
}

// onceLog prints each distinct message once on its writer: promhttp logs a refused series at
// every scrape.
type onceLog struct {
	mu   sync.Mutex
	w    io.Writer
	seen map[string]bool
}

func (l *onceLog) Println(v ...any) {
	msg := strings.TrimSpace(fmt.Sprintln(v...))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if l.seen[msg] || len(l.seen) > 100 {
		return
	}
	l.seen[msg] = true
	fmt.Fprintf(l.w, "sockscope: warning: %s\n", events.Printable(strings.ReplaceAll(msg, "\n", "; ")))
}
