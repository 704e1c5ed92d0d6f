package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/alertmanager"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/internal/backoff"
	"github.com/keywatch/keywatch/internal/broker"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/refusal"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/internal/tlsconfig"
	"github.com/keywatch/keywatch/leader"
	"github.com/keywatch/keywatch/leakreport"
	"github.com/keywatch/keywatch/notify"
	"github.com/keywatch/keywatch/webhook"
)

// daemon is `keywatch run` once its configuration is loaded: it waits for ClickHouse and Kafka
// (saying so on /readyz), then ingests, leads when elected, serves the API, and applies a new
// configuration file when told to (generation.go).
type daemon struct {
	log    *slog.Logger
	reg    *prometheus.Registry
	reload *Reloads // nil: the configuration never changes (demo)
	kafka  *broker.Connector
	// kafkaReady is /readyz's kafka check: kafka.Probe, its answer reused for kafkaCheckEvery.
	kafkaReady api.Check
	decoder    *ingest.Decoder
	startup    *startup
	srv        *api.Server            // nil when http.listen is empty
	cert       *tlsconfig.Certificate // nil without http.tls
	cfg        config.Config          // the configuration started with; restart-only settings come from it

	conn    driver.Conn
	metrics metrics

	mu  sync.Mutex
	gen *generation
}

// kafkaCheckEvery is how long /readyz reuses its answer about the brokers.
const kafkaCheckEvery = 10 * time.Second

// metrics are registered once and shared by every generation.
type metrics struct {
	action    *action.Metrics
	leaks     *leakreport.Metrics
	detect    *detect.Metrics
	notify    *notify.Metrics
	alerting  *alerting.Metrics
	alertmgr  *alertmanager.Metrics
	webhook   *webhook.Metrics
	refusals  *refusal.Log
	lastLoad  prometheus.Gauge
	lastLoadT prometheus.Gauge
}

// newMetrics registers the metrics on reg.
func newMetrics(reg *prometheus.Registry, log *slog.Logger) metrics {
	m := metrics{
		action: action.NewMetrics(reg), leaks: leakreport.NewMetrics(reg), detect: detect.NewMetrics(reg),
		notify: notify.NewMetrics(reg), alerting: alerting.NewMetrics(reg), refusals: refusal.New(reg, log),
		alertmgr: alertmanager.NewMetrics(reg), webhook: webhook.NewMetrics(reg),
		lastLoad: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keywatch_config_last_reload_successful",
			Help: "1 when the last attempt to load the configuration (start, SIGHUP, POST /-/reload) succeeded, 0 when it was refused.",
		}),
		lastLoadT: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keywatch_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration in effect was loaded, in Unix seconds.",
		}),
	}
	reg.MustRegister(m.lastLoad, m.lastLoadT)
	return m
}

// wire opens the (lazy) ClickHouse pool and builds the first generation, so that every mistake in
// the configuration stops the daemon at start, before it waits for anything.
func (d *daemon) wire(cfg config.Config) error {
	conn, err := schema.Open(cfg.ClickHouse, cfg.ClickHouse.Database) // dials on first use
	if err != nil {
		return configError(err)
	}
	d.cfg, d.conn = cfg, conn
	d.metrics = newMetrics(d.reg, d.log)
	gen, err := d.build(cfg)
	if err != nil {
		conn.Close()
		return configError(err)
	}
	d.gen = gen
	d.metrics.lastLoad.Set(1)
	d.metrics.lastLoadT.Set(float64(gen.loaded.Unix()))
	return nil
}

// run waits for the dependencies, then runs ingest, the leader's loops and the reloads.
func (d *daemon) run(ctx context.Context) error {
	if !d.waitForClickHouse(ctx) || !d.migrate(ctx) || !d.waitForKafka(ctx) {
		return nil
	}
	cfg, conn, gen := d.cfg, d.conn, d.current()
	if cfg.ClickHouse.Cluster != "" {
		switch n, err := schema.Shards(ctx, conn, cfg.ClickHouse.Cluster); {
		case err != nil:
			d.log.Warn("cannot count the cluster's shards", "cluster", cfg.ClickHouse.Cluster, "err", err)
		case n > 1:
			d.log.Warn("the ClickHouse cluster has several shards: a crash between the shards' acknowledgements of one batch can lose that batch's rows on the shards that did not acknowledge it; use one shard with replicas (docs/deployment.md: Cluster mode)",
				"cluster", cfg.ClickHouse.Cluster, "shards", n)
		}
	}

	consumer := ingest.NewConsumer(ingest.Options{
		Brokers:           cfg.Kafka.Brokers,
		Dialer:            d.kafka.Dialer(),
		Transport:         d.kafka.Transport(),
		GroupID:           cfg.Kafka.GroupID,
		AuthEventsTopic:   cfg.Kafka.AuthEventsTopic,
		LifecycleTopic:    cfg.Kafka.LifecycleTopic,
		StartFrom:         cfg.Kafka.StartFrom,
		SessionTimeout:    time.Duration(cfg.Kafka.SessionTimeout),
		BatchMaxRows:      cfg.Ingest.BatchMaxRows,
		BatchMaxWait:      time.Duration(cfg.Ingest.BatchMaxWait),
		RollupInterval:    time.Duration(cfg.Ingest.RollupInterval),
		InsertConcurrency: cfg.Ingest.InsertConcurrency,
		MaxMessageBytes:   cfg.Ingest.MaxMessageBytes,
		Decoder:           d.decoder,
		Logger:            d.log,
		Metrics:           ingest.NewMetrics(d.reg),
	}, conn)
	elector := leader.New(leader.Options{
		Disabled:       !cfg.Leader.Enabled,
		Brokers:        cfg.Kafka.Brokers,
		Dialer:         d.kafka.Dialer(),
		GroupID:        cfg.Kafka.GroupID + "-leader",
		Topic:          cfg.Leader.Topic,
		SessionTimeout: time.Duration(cfg.Leader.SessionTimeout),
		Logger:         d.log,
		Registerer:     d.reg,
	})
	if d.srv != nil {
		d.srv.SetChecks(map[string]api.Check{
			"clickhouse": func(ctx context.Context) error { return unreachable(conn.Ping(ctx)) },
			"schema":     func(context.Context) error { return nil },
			"kafka":      d.kafkaReady,
			"ingest": func(context.Context) error {
				switch {
				case !consumer.Assigned():
					return errors.New("not (yet) a member of a consumer group generation")
				case consumer.Failing():
					return errors.New("storing the last batch failed; retrying")
				}
				return nil
			},
		})
		d.serve(gen)
	}
	loops := map[string]func(context.Context) error{
		"ingest": consumer.Run,
		// Only the leader detects, alerts and sends. Each term starts from what ClickHouse holds
		// (the Slack outbox, alert states, queued actions): another replica may have led in
		// between. A reload ends the term's loops and starts them again on the new generation.
		"leader": func(ctx context.Context) error { return elector.Run(ctx, d.lead) },
	}
	if d.reload != nil {
		loops["reload"] = d.reloadOnSignal
	}
	return runAll(ctx, loops)
}

// lead runs the leader's loops of the current generation until leadership ends, starting them
// again whenever a reload retires their generation.
func (d *daemon) lead(ctx context.Context) error {
	for {
		gen := d.current()
		term, stop := context.WithCancel(ctx)
		go func() {
			select {
			case <-gen.retired:
				stop()
			case <-term.Done():
			}
		}()
		err := runAll(term, gen.leaderLoops(d))
		stop()
		if ctx.Err() != nil {
			return err
		}
		select {
		case <-gen.retired:
			d.log.Info("leader loops restarted with the reloaded configuration")
			continue
		default:
		}
		return err
	}
}

func (d *daemon) current() *generation {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen
}

// waitForClickHouse connects, retrying with backoff (and saying so on /readyz) until ClickHouse
// answers or ctx ends. It connects to the user's default database: keywatch's own may not exist
// before the first migration.
func (d *daemon) waitForClickHouse(ctx context.Context) bool {
	waits := backoff.Policy{Initial: time.Second, Max: 10 * time.Second}.Waits()
	for {
		conn, err := schema.Open(d.cfg.ClickHouse, "")
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close()
			if err == nil {
				d.startup.set("clickhouse", nil)
				return true
			}
		}
		if ctx.Err() != nil {
			return false
		}
		err = unreachable(err)
		d.startup.set("clickhouse", err)
		wait := waits.Next()
		d.log.Warn("clickhouse not reachable; retrying", "addr", d.cfg.ClickHouse.Addr, "retry_in", wait, "err", err)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// migrate applies the schema, retrying with backoff until it is applied or ctx ends.
func (d *daemon) migrate(ctx context.Context) bool {
	waits := backoff.Policy{Initial: time.Second, Max: 30 * time.Second}.Waits()
	cfg := d.cfg
	for {
		d.startup.set("schema", errors.New("migrating"))
		applied, err := schema.Migrate(ctx, cfg.ClickHouse, cfg.ClickHouse.Database, schema.RetentionFrom(cfg.Retention))
		if err == nil {
			d.startup.set("schema", nil)
			d.log.Info("schema ready", "database", cfg.ClickHouse.Database, "applied", applied.Versions, "retention_changed", applied.RetentionChanged)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d.startup.set("schema", fmt.Errorf("migration failed, retrying: %w", err))
		wait := waits.Next()
		d.log.Warn("schema migration failed; retrying", "database", cfg.ClickHouse.Database, "retry_in", wait, "err", err)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// waitForKafka probes the brokers until they accept keywatch's TLS and SASL, so that a wrong
// password or CA is an error in the log and on /readyz rather than a consumer group that retries
// in silence.
func (d *daemon) waitForKafka(ctx context.Context) bool {
	waits := backoff.Policy{Initial: time.Second, Max: 30 * time.Second}.Waits()
	for {
		err := d.kafka.Probe(ctx)
		if err == nil {
			d.log.Info("kafka reachable", "brokers", d.cfg.Kafka.Brokers, "security", d.kafka.Mechanism())
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		wait := waits.Next()
		d.log.Error("kafka not usable; retrying", "retry_in", wait, "err", err)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// unreachable words a failed connection to ClickHouse for /readyz, naming the TLS settings when
// the handshake is what failed.
func unreachable(err error) error {
	var notTLS tls.RecordHeaderError
	var verify *tls.CertificateVerificationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &notTLS):
		return fmt.Errorf("not a TLS port (clickhouse.secure, clickhouse.addr): %w", err)
	case errors.As(err, &verify), errors.As(err, new(tls.AlertError)):
		return fmt.Errorf("TLS handshake failed (clickhouse.secure, clickhouse.tls.*): %w", err)
	}
	return fmt.Errorf("unreachable: %w", err)
}

// startup is what /readyz says before the daemon is wired: ClickHouse not reached yet, the
// schema migrating.
type startup struct {
	mu    sync.Mutex
	state map[string]error
}

func newStartup() *startup {
	return &startup{state: map[string]error{
		"clickhouse": errors.New("unreachable: connecting"),
		"schema":     errors.New("waiting for clickhouse"),
	}}
}

func (s *startup) set(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state[name] = err
}

func (s *startup) checks(kafka api.Check) map[string]api.Check {
	get := func(name string) api.Check {
		return func(context.Context) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.state[name]
		}
	}
	return map[string]api.Check{"clickhouse": get("clickhouse"), "schema": get("schema"), "kafka": kafka}
}
