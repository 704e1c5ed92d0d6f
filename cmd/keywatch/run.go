package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/digest"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/ingest/geo"
	"github.com/keywatch/keywatch/ingest/mapping"
	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/leader"
	"github.com/keywatch/keywatch/leakreport"
	"github.com/keywatch/keywatch/notify"
)

const runDescription = `
Run the keywatch daemon: apply the ClickHouse schema (waiting for ClickHouse if it is not up yet),
then consume the authentication and key lifecycle topics as a member of the consumer group and
store every event in ClickHouse. Malformed messages go to the dead_letters table with the reason.
The detectors (lingering, spike, leak, hygiene) run on their cron schedules (detect.*.schedule)
and store their findings in the findings table. Alerting turns findings into alerts (pending,
firing, resolved) every alerting.evaluate_interval, notifies Slack (slack.*) through an outbox in
ClickHouse, and asks the revoke policy (revoke.*) what to do about each firing alert; revokes go
out as signed webhooks, and every decision is written to the action_audit table.

Every replica ingests and serves HTTP; only one at a time (the leader) runs the detectors, alerting
and the Slack and revoke senders. The replicas elect it as members of the consumer group
<kafka.group_id>-leader on the one-partition topic leader.topic (created if missing); when the
leader dies another takes over within leader.session_timeout, continuing from ClickHouse. The
gauge keywatch_leader is 1 on the leader. leader.enabled: false makes a replica always lead.

Offsets are committed only after ClickHouse has stored the batch that holds them; while ClickHouse
is unreachable, fetching pauses and the insert is retried with backoff. On SIGTERM or Ctrl-C the
batch in flight is stored (or left uncommitted) and the process exits 0.

The HTTP listener (http.listen, default :8466) serves /metrics, /healthz and /readyz, and with a
bearer token (KEYWATCH_HTTP_TOKEN or http.token_file) POST /v1/lifecycle (a lifecycle event,
contract 3.2), GET /v1/keys/{id}/readiness (is the key safe to retire?), POST /v1/keys/{id}/revoke
(a manual revoke, through the same guardrails), POST /v1/keys/{id}/rollback (extend_grace or
reactivate) and GET/POST/DELETE /v1/silences. POST /v1/leaks
takes leak reports (GitHub secret scanning signatures, or leak_reports.token) and
POST /slack/interactions the "Revoke now" and "Roll back" buttons (Slack's request signature).
A failure spike after a retire or revoke step offers a rollback under the rollback.* policy.`

func runCmd(ctx context.Context, args []string, _ io.Writer, stderr io.Writer) error {
	cfg, _, err := parseConfig("run", runDescription, args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	log.Info("starting keywatch", "version", versionString())
	return serve(ctx, cfg, log, prometheus.NewRegistry())
}

// serve runs the daemon until ctx ends: schema, ingest, the detectors and the HTTP listener.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, reg *prometheus.Registry) error {
	decoder, closeGeo, err := newDecoder(cfg)
	if err != nil {
		return err
	}
	defer closeGeo()
	if err := migrateWhenReachable(ctx, cfg, log); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	conn, err := schema.Open(cfg.ClickHouse, cfg.ClickHouse.Database)
	if err != nil {
		return err
	}
	defer conn.Close()
	if cfg.ClickHouse.Cluster != "" {
		switch n, err := schema.Shards(ctx, conn, cfg.ClickHouse.Cluster); {
		case err != nil:
			log.Warn("cannot count the cluster's shards", "cluster", cfg.ClickHouse.Cluster, "err", err)
		case n > 1:
			log.Warn("the ClickHouse cluster has several shards: a crash between the shards' acknowledgements of one batch can lose that batch's rows on the shards that did not acknowledge it; use one shard with replicas (README: Cluster mode)",
				"cluster", cfg.ClickHouse.Cluster, "shards", n)
		}
	}

	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	revoker := action.New(conn, cfg.Revoke, action.NewMetrics(reg), log).WithRollback(cfg.Rollback)
	leaks, err := leakreport.New(conn, cfg.LeakReports, cfg.Fingerprint.Key, revoker, leakreport.NewMetrics(reg), log)
	if err != nil {
		return usageError{err}
	}
	consumer := ingest.NewConsumer(ingest.Options{
		Brokers:           cfg.Kafka.Brokers,
		GroupID:           cfg.Kafka.GroupID,
		AuthEventsTopic:   cfg.Kafka.AuthEventsTopic,
		LifecycleTopic:    cfg.Kafka.LifecycleTopic,
		StartFrom:         cfg.Kafka.StartFrom,
		SessionTimeout:    time.Duration(cfg.Kafka.SessionTimeout),
		BatchMaxRows:      cfg.Ingest.BatchMaxRows,
		BatchMaxWait:      time.Duration(cfg.Ingest.BatchMaxWait),
		InsertConcurrency: cfg.Ingest.InsertConcurrency,
		MaxMessageBytes:   cfg.Ingest.MaxMessageBytes,
		Decoder:           decoder,
		Logger:            log,
		Metrics:           ingest.NewMetrics(reg),
	}, conn)

	loops := map[string]func(context.Context) error{"ingest": consumer.Run}
	lingering := detect.NewLingering(conn, cfg.Detect.Lingering)
	engine := detect.NewEngine(detect.All(conn, cfg.Detect), detect.NewStore(conn), detect.NewMetrics(reg), log)
	notifyMetrics := notify.NewMetrics(reg)
	alertingMetrics := alerting.NewMetrics(reg)
	elector := leader.New(leader.Options{
		Disabled:       !cfg.Leader.Enabled,
		Brokers:        cfg.Kafka.Brokers,
		GroupID:        cfg.Kafka.GroupID + "-leader",
		Topic:          cfg.Leader.Topic,
		SessionTimeout: time.Duration(cfg.Leader.SessionTimeout),
		Logger:         log,
		Registerer:     reg,
	})
	// Only the leader detects, alerts and sends. Each term starts from what ClickHouse holds (the
	// Slack outbox, alert states, queued actions): another replica may have led in between.
	loops["leader"] = func(ctx context.Context) error {
		return elector.Run(ctx, func(ctx context.Context) error {
			slack := notify.NewSlack(conn, cfg.Slack, notifyMetrics, log)
			evaluator := alerting.New(conn, cfg.Alerting, cfg.Slack, slack, revoker, alertingMetrics, log)
			digests := digest.New(conn, cfg.Digest, cfg.Slack, lingering, slack, log)
			return runAll(ctx, map[string]func(context.Context) error{
				"detect": engine.Start, "notify": slack.Run, "action": revoker.Run, "alerting": evaluator.Run,
				"digest": digests.Run,
			})
		})
	}
	if cfg.HTTP.Listen != "" {
		checks := map[string]api.Check{
			"clickhouse": conn.Ping,
			"ingest": func(context.Context) error {
				switch {
				case !consumer.Assigned():
					return errors.New("not (yet) a member of a consumer group generation")
				case consumer.Failing():
					return errors.New("storing the last batch failed; retrying")
				}
				return nil
			},
		}
		v1 := api.V1{
			Token:     cfg.HTTP.Token,
			Lifecycle: ingest.NewLifecycleWriter(conn),
			Readiness: lingering,
			Silences:  alerting.NewSilenceAPI(conn, cfg.Alerting, log),
			Leaks:     leaks,
			Revoke:    revoker.APIHandler(),
			Rollback:  revoker.RollbackAPIHandler(),
			Rejected:  revoker.RejectedHTTP,
		}
		interactions := notify.NewInteractions(cfg.Slack, revoker, notifyMetrics, log)
		loops["http"] = api.New(cfg.HTTP.Listen, reg, checks, v1, interactions, log).Run
	}
	if err := runAll(ctx, loops); err != nil {
		return err
	}
	log.Info("stopped cleanly")
	return nil
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
		return nil, nil, usageError{err}
	}
	lookup, err := geo.Open(cfg.Geo.ASNDatabase, cfg.Geo.CountryDatabase)
	if err != nil {
		return nil, nil, usageError{err}
	}
	limits := ingest.Limits{MaxAge: time.Duration(cfg.Ingest.MaxEventAge), MaxSkew: time.Duration(cfg.Ingest.MaxEventSkew)}
	fp := ingest.NewFingerprinter([]byte(cfg.Fingerprint.Key))
	return ingest.NewDecoder(m, fp, limits, lookup), func() { lookup.Close() }, nil
}

// migrateWhenReachable applies the schema, retrying with backoff while ClickHouse cannot be
// reached; it returns early (nil) when ctx ends first.
func migrateWhenReachable(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	wait := time.Second
	for {
		applied, err := schema.Migrate(ctx, cfg.ClickHouse, cfg.ClickHouse.Database, schema.RetentionFrom(cfg.Retention))
		if err == nil {
			log.Info("schema ready", "database", cfg.ClickHouse.Database, "applied", applied.Versions, "retention_changed", applied.RetentionChanged)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("clickhouse not ready; retrying", "addr", cfg.ClickHouse.Addr, "retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
