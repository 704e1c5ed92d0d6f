// Package api owns keywatch's HTTP listener: Prometheus metrics, liveness and readiness from the
// moment the process starts, the bearer-token /v1 endpoints (lifecycle events in, key readiness
// out), and the operator endpoints /-/reload and /-/config. It does not own what the checks or
// endpoints look at, nor what a reload does.
package api

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is usable; nil means ready. Its error is what /readyz
// shows for it, so it says what is wrong in a few words (unreachable: dial tcp ...).
type Check func(ctx context.Context) error

// checkTTL is how long a check's result is reused: /readyz is unauthenticated, so callers must
// not be able to make keywatch dial ClickHouse or Kafka more often than this.
const checkTTL = 2 * time.Second

// Options configure the listener.
type Options struct {
	Addr string
	// TLS, when set, makes the listener serve HTTPS (tlsconfig.Certificate re-reads its files).
	TLS      *tls.Config
	Gatherer prometheus.Gatherer
	Log      *slog.Logger
}

// App is what the daemon serves once it is wired: until Serve is called, /v1, /slack and /-/
// answer 503 while /healthz, /readyz and /metrics answer from the start.
type App struct {
	V1 V1
	// SlackInteractions, when not nil, serves POST /slack/interactions (it verifies Slack's signature).
	SlackInteractions http.Handler
	// Reload serves POST /-/reload (bearer token): it applies the configuration file again and
	// returns why it refused to, if it did.
	Reload func(ctx context.Context) error
	// Config serves GET /-/config (bearer token): the configuration in effect, secrets hidden.
	Config func() string
}

// Server serves /metrics, /healthz, /readyz (and their Prometheus-style aliases /-/healthy and
// /-/ready), /v1, /slack/interactions, /-/reload and /-/config.
type Server struct {
	srv    *http.Server
	tls    *tls.Config
	log    *slog.Logger
	app    atomic.Pointer[http.ServeMux]
	checks atomic.Pointer[[]*cachedCheck]
}

// New returns a server for opts.Addr; nothing listens until Run.
func New(opts Options) *Server {
	s := &Server{tls: opts.TLS, log: opts.Log.With("component", "api")}
	s.checks.Store(&[]*cachedCheck{})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	for _, p := range []string{"/healthz", "/-/healthy"} {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("ok\n"))
		})
	}
	for _, p := range []string{"/readyz", "/-/ready"} {
		mux.HandleFunc("GET "+p, s.ready)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if app := s.app.Load(); app != nil {
			app.ServeHTTP(w, r)
			return
		}
		WriteError(w, http.StatusServiceUnavailable, "keywatch is starting: see /readyz")
	})
	s.srv = &http.Server{Addr: opts.Addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, TLSConfig: opts.TLS}
	return s
}

// SetChecks replaces what /readyz checks.
func (s *Server) SetChecks(checks map[string]Check) {
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	cs := make([]*cachedCheck, len(names))
	for i, n := range names {
		cs[i] = &cachedCheck{name: n, check: checks[n], ttl: checkTTL}
	}
	s.checks.Store(&cs)
}

// Serve starts serving app (or, called again, serves the new app from the next request on).
func (s *Server) Serve(app App) {
	mux := http.NewServeMux()
	app.V1.register(mux)
	if app.SlackInteractions != nil {
		mux.Handle("POST /slack/interactions", app.SlackInteractions)
	}
	if app.Reload != nil {
		mux.Handle("POST /-/reload", app.V1.authorized(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := app.Reload(r.Context()); err != nil {
				WriteError(w, http.StatusUnprocessableEntity, err.Error())
				return
			}
			WriteJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
		})))
	}
	if app.Config != nil {
		mux.Handle("GET /-/config", app.V1.authorized(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(app.Config()))
		})))
	}
	s.app.Store(mux)
}

// readyTimeout bounds a readiness answer, under the Helm chart's 3 s probe timeout: the checks
// run at once, and one that has not answered by then fails.
const readyTimeout = 2500 * time.Millisecond

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	checks := *s.checks.Load()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = c.run(ctx) })
	}
	wg.Wait()
	status := map[string]string{}
	code := http.StatusOK
	for i, c := range checks {
		status[c.name] = "ok"
		if errs[i] != nil {
			status[c.name] = errs[i].Error()
			code = http.StatusServiceUnavailable
		}
	}
	WriteJSON(w, code, status)
}

// Every returns c with its result reused for ttl (longer than the checkTTL every check gets): for
// a check that costs the dependency a login, such as a TLS and SASL connection to a broker.
func Every(ttl time.Duration, c Check) Check {
	cc := &cachedCheck{check: c, ttl: ttl}
	return cc.run
}

// cachedCheck runs its check at most once per ttl, one caller at a time.
type cachedCheck struct {
	name  string
	check Check
	ttl   time.Duration

	mu  sync.Mutex
	at  time.Time
	err error
}

func (c *cachedCheck) run(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.ttl {
		return c.err
	}
	c.err = c.check(ctx)
	c.at = time.Now()
	return c.err
}

// Run listens until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return err
	}
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
		ln = tls.NewListener(ln, s.tls)
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "scheme", scheme,
		"paths", []string{"/metrics", "/healthz", "/readyz", "/-/healthy", "/-/ready", "/-/reload", "/-/config", "/v1/...", "/slack/interactions"})
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
