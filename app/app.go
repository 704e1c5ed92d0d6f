// Package app is keywatch's composition root: it wires the configuration, the ClickHouse schema,
// ingest, the leader's loops (detection, alerting, Slack, actions, digests) and the HTTP router in
// one straight line (Run), and puts a reloaded configuration into effect. It owns no domain logic
// and no table: every subsystem it starts is a package of its own. Commands (cmd/keywatch) parse
// flags and call Run; the demo (package demo) calls it with its own configuration.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/ingest/geo"
	"github.com/keywatch/keywatch/ingest/mapping"
	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/internal/broker"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/internal/tlsconfig"
)

// Options are what Run needs besides the configuration.
type Options struct {
	Log      *slog.Logger
	Registry *prometheus.Registry
	// Version and Revision label keywatch_build_info.
	Version, Revision string
	// Reload, when not nil, is where a new configuration comes from (SIGHUP, POST /-/reload);
	// nil: the configuration never changes (the demo).
	Reload *Reloads
}

// Reloads is where a running daemon gets a new configuration: Load reads the file and the secret
// files again, on every value of Signals (SIGHUP) or POST /-/reload.
type Reloads struct {
	Load    func() (config.Config, error)
	Signals <-chan os.Signal
}

// ConfigError is a configuration the daemon cannot start with; Run returns it before it waits for
// anything, so a command can exit 2 naming the setting.
type ConfigError struct{ Err error }

func (e ConfigError) Error() string { return e.Err.Error() }
func (e ConfigError) Unwrap() error { return e.Err }

func configError(err error) error { return ConfigError{err} }

// NewLogger is the daemon's logger as log.* configures it, writing to w.
func NewLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Run runs the daemon on cfg until ctx ends. The HTTP listener comes up first, so /healthz answers
// while ClickHouse and Kafka are still out of reach and /readyz says which is; then the schema,
// ingest, the leader's loops and the router. Every step and its cleanup is in this function.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	log, reg := opts.Log, opts.Registry
	decoder, closeGeo, err := newDecoder(cfg)
	if err != nil {
		return err
	}
	defer closeGeo()
	kafkaConn, err := broker.New(cfg.Kafka)
	if err != nil {
		return configError(err)
	}
	for _, w := range append(kafkaConn.Warnings(), schema.Warnings(cfg.ClickHouse)...) {
		log.Warn("INSECURE: " + w)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(opts.Version, opts.Revision))
	d := &daemon{
		log: log, reg: reg, reload: opts.Reload, kafka: kafkaConn, decoder: decoder,
		startup: newStartup(),
		// Each probe is a TLS and SASL login: at most one per kafkaCheckEvery, whoever asks.
		kafkaReady: api.Every(kafkaCheckEvery, kafkaConn.Probe),
	}
	if err := d.wire(cfg); err != nil {
		return err
	}
	defer d.conn.Close()
	loops := map[string]func(context.Context) error{"keywatch": d.run}
	if cfg.HTTP.Listen != "" {
		srv, cert, err := newServer(cfg, reg, log)
		if err != nil {
			return err
		}
		d.srv, d.cert = srv, cert
		d.srv.SetChecks(d.startup.checks(d.kafkaReady))
		loops["http"] = d.srv.Run
	}
	if err := runAll(ctx, loops); err != nil {
		return err
	}
	log.Info("stopped cleanly")
	return nil
}

// newServer is the HTTP server http.* describes; cert is nil without http.tls.
func newServer(cfg config.Config, reg *prometheus.Registry, log *slog.Logger) (*api.Server, *tlsconfig.Certificate, error) {
	opts := api.Options{
		Addr: cfg.HTTP.Listen, AdminAddr: cfg.HTTP.AdminListen, Gatherer: reg, Log: log, Tokens: tokens(cfg.HTTP),
		Limits: api.Limits{
			ReadTimeout: time.Duration(cfg.HTTP.ReadTimeout), IdleTimeout: time.Duration(cfg.HTTP.IdleTimeout),
			MaxConnections: cfg.HTTP.MaxConnections,
		},
	}
	var cert *tlsconfig.Certificate
	if cfg.HTTP.TLS.Enabled() {
		var err error
		if cert, err = tlsconfig.LoadCertificate(cfg.HTTP.TLS.CertFile, cfg.HTTP.TLS.KeyFile, log); err != nil {
			return nil, nil, configError(err)
		}
		opts.TLS = cert.ServerConfig()
	}
	return api.New(opts), cert, nil
}

// buildInfo is the keywatch_build_info gauge: always 1, labelled with what was built, the
// convention of Prometheus exporters.
func buildInfo(version, revision string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "keywatch_build_info",
		Help:        "A metric with a constant '1' value labelled by the version, revision and Go version keywatch was built with.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// runAll runs every loop until ctx ends; the first that fails stops the others and its error,
// named, is returned.
func runAll(ctx context.Context, loops map[string]func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(loops))
	for name, fn := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// newDecoder builds the decoder of authentication events the configuration describes.
func newDecoder(cfg config.Config) (*ingest.Decoder, func(), error) {
	m, err := mapping.Compile("ingest.mappings."+cfg.Ingest.Mapping, cfg.Ingest.MappingSpec())
	if err != nil {
		return nil, nil, configError(err)
	}
	lookup, err := geo.Open(cfg.Geo.ASNDatabase, cfg.Geo.CountryDatabase)
	if err != nil {
		return nil, nil, configError(err)
	}
	limits := ingest.Limits{MaxAge: time.Duration(cfg.Ingest.MaxEventAge), MaxSkew: time.Duration(cfg.Ingest.MaxEventSkew)}
	fp := ingest.NewFingerprinter([]byte(cfg.Fingerprint.Key))
	return ingest.NewDecoder(m, fp, limits, lookup), func() { lookup.Close() }, nil
}
