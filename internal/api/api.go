// Package api owns keywatch's HTTP listener: Prometheus metrics, liveness and readiness, and the
// bearer-token /v1 endpoints (lifecycle events in, key readiness out). It does not own what the
// checks or endpoints look at.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is usable; nil means ready.
type Check func(ctx context.Context) error

// Server serves /metrics, /healthz, /readyz and /v1.
type Server struct {
	srv *http.Server
	log *slog.Logger
}

// New returns a server for addr. /readyz answers 200 only when every check passes, and says which
// failed otherwise; /healthz answers 200 while the process runs.
// slackInteractions, when not nil, serves POST /slack/interactions (it verifies Slack's signature).
func New(addr string, gatherer prometheus.Gatherer, checks map[string]Check, v1 V1, slackInteractions http.Handler, log *slog.Logger) *Server {
	mux := http.NewServeMux()
	v1.register(mux)
	if slackInteractions != nil {
		mux.Handle("POST /slack/interactions", slackInteractions)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		names := make([]string, 0, len(checks))
		for n := range checks {
			names = append(names, n)
		}
		sort.Strings(names)
		status := map[string]string{}
		code := http.StatusOK
		for _, n := range names {
			status[n] = "ok"
			if err := checks[n](ctx); err != nil {
				status[n] = err.Error()
				code = http.StatusServiceUnavailable
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(status)
	})
	return &Server{
		srv: &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		log: log.With("component", "api"),
	}
}

// Run listens until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return err
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "paths", []string{"/metrics", "/healthz", "/readyz", "/v1/lifecycle", "/v1/keys/{id}/readiness"})
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
