// Package api owns keywatch's HTTP listeners and what every route shares: Prometheus metrics,
// liveness and readiness from the moment the process starts, connection limits and timeouts,
// bearer tokens with scopes (Guard) and JSON answers (WriteJSON, WriteError). It imports no other
// keywatch package: which routes exist and what they do is the composition root's router (package
// app) and the handlers of the packages that own them.
package api

import (
	"cmp"
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

// Options configure the listeners.
type Options struct {
	Addr string
	// AdminAddr, when set, is a second listener serving /metrics, /healthz and /readyz (with
	// each failing check's error); Addr then serves only the application. Empty: Addr serves
	// both, and /readyz names the failing checks' errors only to a bearer token.
	AdminAddr string
	// TLS, when set, makes the listeners serve HTTPS (tlsconfig.Certificate re-reads its files).
	TLS      *tls.Config
	Gatherer prometheus.Gatherer
	Log      *slog.Logger
	// Tokens may read /readyz's errors on a shared listener from the start, before Serve (whose
	// App's tokens replace them): a daemon stuck before it is wired still says why to its operator.
	Tokens Tokens
	// Limits bound what one connection may hold; zero fields take DefaultLimits.
	Limits Limits
}

// Limits bound what a client may hold of the listener. Nothing is read from a request before its
// headers are complete, a bearer-token request's body is read only once its token is checked,
// and a connection that sends too slowly, or idles, is closed.
type Limits struct {
	// ReadTimeout bounds a request's headers and body together.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end of the answer.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no next request.
	IdleTimeout time.Duration
	// MaxConnections is how many connections each listener holds at once; more wait to be
	// accepted, so the admin listener keeps answering while the public one is full.
	MaxConnections int
	// MaxHeaderBytes bounds a request's line and headers.
	MaxHeaderBytes int
}

// DefaultLimits are the limits of fields left zero.
var DefaultLimits = Limits{
	ReadTimeout: 10 * time.Second, WriteTimeout: 2 * time.Minute, IdleTimeout: 60 * time.Second,
	MaxConnections: 1024, MaxHeaderBytes: 32 << 10,
}

func (l Limits) orDefault() Limits {
	d := DefaultLimits
	return Limits{
		ReadTimeout: cmp.Or(l.ReadTimeout, d.ReadTimeout), WriteTimeout: cmp.Or(l.WriteTimeout, d.WriteTimeout),
		IdleTimeout: cmp.Or(l.IdleTimeout, d.IdleTimeout), MaxConnections: cmp.Or(l.MaxConnections, d.MaxConnections),
		MaxHeaderBytes: cmp.Or(l.MaxHeaderBytes, d.MaxHeaderBytes),
	}
}

// Server serves /metrics, /healthz, /readyz (and their Prometheus-style aliases /-/healthy and
// /-/ready), /v1, /slack/interactions, /-/reload and /-/config, on one listener or two.
type Server struct {
	public *http.Server
	admin  *http.Server // nil: the public listener serves the admin paths too
	limits Limits
	tls    *tls.Config
	log    *slog.Logger
	app    atomic.Pointer[http.Handler]
	tokens atomic.Pointer[Tokens] // who may see /readyz's errors on a shared listener
	checks atomic.Pointer[[]*cachedCheck]
}

// New returns a server for opts.Addr (and opts.AdminAddr); nothing listens until Run.
func New(opts Options) *Server {
	s := &Server{tls: opts.TLS, log: opts.Log.With("component", "api"), limits: opts.Limits.orDefault()}
	s.checks.Store(&[]*cachedCheck{})
	s.tokens.Store(&opts.Tokens)
	adminMux := http.NewServeMux()
	adminMux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	for _, p := range []string{"/healthz", "/-/healthy"} {
		adminMux.HandleFunc("GET "+p, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("ok\n"))
		})
	}
	for _, p := range []string{"/readyz", "/-/ready"} {
		adminMux.HandleFunc("GET "+p, s.ready(opts.AdminAddr != ""))
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := s.app.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		WriteError(w, http.StatusServiceUnavailable, "keywatch is starting: see /readyz")
	})
	if opts.AdminAddr == "" {
		adminMux.Handle("/", app)
		s.public = s.server(opts.Addr, adminMux)
		return s
	}
	s.public = s.server(opts.Addr, app)
	s.admin = s.server(opts.AdminAddr, adminMux)
	return s
}

func (s *Server) server(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr: addr, Handler: h, TLSConfig: s.tls,
		ReadHeaderTimeout: s.limits.ReadTimeout, ReadTimeout: s.limits.ReadTimeout,
		WriteTimeout: s.limits.WriteTimeout, IdleTimeout: s.limits.IdleTimeout,
		MaxHeaderBytes: s.limits.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
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

// Serve starts serving h, the router of every route beside the health and metrics paths, with
// tokens deciding who may read /readyz's errors on the public listener (called again, it serves the
// new router from the next request on). Until the first call those routes answer 503.
func (s *Server) Serve(h http.Handler, tokens Tokens) {
	s.tokens.Store(&tokens)
	s.app.Store(&h)
}

// readyTimeout bounds a readiness answer, under the Helm chart's 3 s probe timeout: the checks
// run at once, and one that has not answered by then fails.
const readyTimeout = 2500 * time.Millisecond

// ready answers whether every check passes. detailed (the admin listener) shows each failing
// check's error to anyone; on the public listener only a bearer token sees them, and others see
// "not ready", since the errors name internal addresses.
func (s *Server) ready(detailed bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		checks := *s.checks.Load()
		errs := make([]error, len(checks))
		var wg sync.WaitGroup
		for i, c := range checks {
			wg.Go(func() { errs[i] = c.run(ctx) })
		}
		wg.Wait()
		show := detailed // this request's answer only: detailed is every request's
		if !show {
			_, show = Guard{Tokens: *s.tokens.Load()}.scope(r)
		}
		status := map[string]string{}
		code := http.StatusOK
		for i, c := range checks {
			status[c.name] = "ok"
			if errs[i] != nil {
				status[c.name] = "not ready"
				if show {
					status[c.name] = errs[i].Error()
				}
				code = http.StatusServiceUnavailable
			}
		}
		WriteJSON(w, code, status)
	}
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

// Run listens until ctx ends, then shuts down: requests in flight get shutdownGrace to finish,
// and connections still open after it are closed.
func (s *Server) Run(ctx context.Context) error {
	public, err := net.Listen("tcp", s.public.Addr)
	if err != nil {
		return err
	}
	var admin net.Listener
	if s.admin != nil {
		if admin, err = net.Listen("tcp", s.admin.Addr); err != nil {
			_ = public.Close()
			return err
		}
	}
	return s.serve(ctx, public, admin)
}

// serve serves on the listeners (admin is nil without an admin listener) until ctx ends.
func (s *Server) serve(ctx context.Context, public, admin net.Listener) error {
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	type listener struct {
		srv *http.Server
		ln  net.Listener
	}
	ls := []listener{{s.public, public}}
	if s.admin == nil {
		s.log.Info("listening", "addr", public.Addr().String(), "scheme", scheme,
			"paths", []string{"/metrics", "/healthz", "/readyz", "/-/healthy", "/-/ready", "/-/reload", "/-/config", "/v1/...", "/slack/interactions", "/console/"})
	} else {
		ls = append(ls, listener{s.admin, admin})
		s.log.Info("listening", "addr", public.Addr().String(), "scheme", scheme,
			"paths", []string{"/-/reload", "/-/config", "/v1/...", "/slack/interactions", "/console/"})
		s.log.Info("admin listening", "addr", admin.Addr().String(), "scheme", scheme,
			"paths", []string{"/metrics", "/healthz", "/readyz", "/-/healthy", "/-/ready"})
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		ln := limitListener(l.ln, s.limits.MaxConnections)
		if s.tls != nil {
			ln = tls.NewListener(ln, s.tls)
		}
		go func() { errc <- l.srv.Serve(ln) }()
	}
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, l := range ls {
		if serr := l.srv.Shutdown(shutdown); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			s.log.Warn("connections still open at shutdown are closed", "addr", l.srv.Addr, "err", serr)
			_ = l.srv.Close()
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdownGrace is how long requests in flight may take once the daemon stops.
const shutdownGrace = 5 * time.Second
