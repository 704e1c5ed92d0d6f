package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/alertmanager"
	"github.com/keywatch/keywatch/console"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/digest"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/leakreport"
	"github.com/keywatch/keywatch/notify"
	"github.com/keywatch/keywatch/openapi"
	"github.com/keywatch/keywatch/readapi"
	"github.com/keywatch/keywatch/webhook"
)

// restartOnly are the settings (by path prefix) a running daemon cannot take over: its
// connections, what it stores and how, and its own listener. A reload that changes one is refused.
var restartOnly = []string{
	"kafka.", "clickhouse.", "ingest.", "geo.", "fingerprint.", "retention.", "http.listen", "http.admin_listen", "http.tls.",
	"http.read_timeout", "http.idle_timeout", "http.max_connections", "leader.", "log.",
}

// generation is everything built from one configuration that a reload replaces: the detectors'
// schedules and thresholds, alerting timers, routes and file silences, the revoke and rollback
// policies, leak reports, digests and the API's token.
type generation struct {
	cfg       config.Config
	loaded    time.Time
	revoker   *action.Revoker
	webhooks  *webhook.Outbox // the notification webhooks every producer publishes to
	leaks     *leakreport.Handler
	lingering *detect.Lingering
	engine    *detect.Engine
	// silences and read serve /v1/silences and the read API, and the console reads through them.
	silences *alerting.SilenceAPI
	read     *readapi.API
	// console is the web console, nil when console.session_key is not set.
	console *console.Console
	retired chan struct{} // closed when a reload replaces this generation
}

func (d *daemon) build(cfg config.Config) (*generation, error) {
	webhooks, err := webhook.NewOutbox(d.conn, cfg.Webhooks, d.metrics.webhook, d.log)
	if err != nil {
		return nil, err
	}
	revoker := action.New(d.conn, cfg.Revoke, d.metrics.action, d.log).WithRollback(cfg.Rollback).WithPublisher(webhooks)
	leaks, err := leakreport.New(d.conn, cfg.LeakReports, cfg.Fingerprint.Key, d.metrics.refusals, d.metrics.leaks, d.log)
	if err != nil {
		return nil, err
	}
	lingering := detect.NewLingering(d.conn, cfg.Detect.Lingering)
	gen := &generation{
		cfg: cfg, loaded: time.Now(), revoker: revoker, leaks: leaks, webhooks: webhooks, lingering: lingering,
		engine:   detect.NewEngine(detect.All(d.conn, cfg.Detect), finding.NewStore(d.conn), d.metrics.detect, d.log, detect.Jobs(d.conn, cfg.Detect)...),
		silences: alerting.NewSilenceAPI(d.conn, cfg.Alerting, d.log),
		read:     readapi.New(d.conn, lingering, d.log),
		retired:  make(chan struct{}),
	}
	if cfg.Console.Enabled() {
		gen.console, err = console.New(console.Options{
			Config: cfg.Console, Tokens: tokens(cfg.HTTP), Refusals: d.metrics.refusals, Log: d.log,
			Alerts:    alerting.NewReader(d.conn),
			Silences:  gen.silences,
			Actions:   consoleActions{Revoker: revoker, conn: d.conn},
			Resources: gen.read,
		})
		if err != nil {
			return nil, err
		}
	}
	return gen, nil
}

// consoleActions are the console's actions: the generation's Revoker decides, action's reads list.
type consoleActions struct {
	*action.Revoker
	conn action.Querier
}

func (a consoleActions) Pending(ctx context.Context) ([]action.Pending, error) {
	return action.ReadPending(ctx, a.conn)
}

func (a consoleActions) Audit(ctx context.Context, q action.AuditQuery) ([]action.AuditEntry, error) {
	return action.ReadAuditOf(ctx, a.conn, q)
}

// leaderLoops are what the leader runs on gen.
func (gen *generation) leaderLoops(d *daemon) map[string]func(context.Context) error {
	cfg := gen.cfg
	slack := notify.NewSlack(d.conn, cfg.Slack, d.metrics.notify, d.log)
	evaluator := alerting.New(d.conn, cfg.Alerting, cfg.Slack, slack, gen.revoker, d.metrics.alerting, d.log).WithPublisher(gen.webhooks)
	digests := digest.New(d.conn, cfg.Digest, cfg.Slack, gen.lingering, slack, d.log)
	if len(cfg.Webhooks) > 0 {
		digests.WithPublisher(gen.webhooks) // digests and nudges run for the webhooks even without a Slack channel
	}
	loops := map[string]func(context.Context) error{
		"detect": gen.engine.Start, "notify": slack.Run, "action": gen.revoker.Run, "alerting": evaluator.Run,
		"digest": digests.Run, "webhook": gen.webhooks.Run,
	}
	if len(cfg.Alertmanager.URLs) > 0 {
		forwarder := alertmanager.New(cfg.Alertmanager, time.Duration(cfg.Alerting.EvaluateInterval), cfg.Slack, d.metrics.alertmgr, d.log)
		evaluator.WithObservers(forwarder)
		loops["alertmanager"] = forwarder.Run
	}
	return loops
}

// routes are the router's handlers on gen.
func (d *daemon) routes(gen *generation) routes {
	cfg := gen.cfg
	rt := routes{
		Guard:             api.Guard{Tokens: tokens(cfg.HTTP), Refusals: d.metrics.refusals},
		Lifecycle:         ingest.NewLifecycleWriter(d.conn),
		Readiness:         gen.lingering,
		Silences:          gen.silences,
		Leaks:             gen.leaks,
		Read:              gen.read,
		OpenAPI:           openapi.Handler(),
		Revoke:            gen.revoker.APIHandler(),
		Rollback:          gen.revoker.RollbackAPIHandler(),
		SlackInteractions: notify.NewInteractions(d.conn, cfg.Slack, gen.revoker, d.metrics.refusals, d.metrics.notify, d.log),
		Config:            func() string { return describeConfig(gen.cfg, gen.loaded) },
	}
	if d.reload != nil {
		rt.Reload = d.apply
	}
	if gen.console != nil {
		rt.Console = gen.console
	}
	return rt
}

// serve makes the server answer with gen's routes.
func (d *daemon) serve(gen *generation) {
	d.srv.Serve(d.routes(gen).handler(), tokens(gen.cfg.HTTP))
}

// reloadOnSignal applies the configuration again on each SIGHUP.
func (d *daemon) reloadOnSignal(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.reload.Signals:
			d.log.Info("SIGHUP: reloading the configuration")
			_ = d.apply(ctx) // apply logs the outcome
		}
	}
}

// apply reads the configuration again and puts it in effect, or refuses it with every problem
// named and keeps the running one.
func (d *daemon) apply(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cert != nil {
		d.cert.Reload()
	}
	err := d.swap()
	if err != nil {
		d.metrics.lastLoad.Set(0)
		d.log.Error("configuration reload refused; the running configuration stays", "err", err)
		return err
	}
	d.metrics.lastLoad.Set(1)
	d.metrics.lastLoadT.Set(float64(time.Now().Unix()))
	return nil
}

// swap builds the new generation and puts it in place of the current one (d.mu held).
func (d *daemon) swap() error {
	cfg, err := d.reload.Load()
	if err != nil {
		return err
	}
	var fixed []string
	for _, path := range config.Changed(d.cfg, cfg) {
		for _, p := range restartOnly {
			if strings.HasPrefix(path, p) {
				fixed = append(fixed, path)
				break
			}
		}
	}
	if len(fixed) > 0 {
		return fmt.Errorf("these settings change only with a restart: %s", strings.Join(fixed, ", "))
	}
	changed := config.Changed(d.gen.cfg, cfg)
	if len(changed) == 0 {
		d.log.Info("configuration reloaded: nothing changed")
		return nil
	}
	gen, err := d.build(cfg)
	if err != nil {
		return errors.New("invalid configuration:\n  " + err.Error())
	}
	old := d.gen
	d.gen = gen
	if d.srv != nil {
		d.serve(gen)
	}
	close(old.retired)
	d.log.Info("configuration reloaded", "changed", changed)
	return nil
}

// describeConfig is the configuration in effect as check-config prints it, secrets hidden.
func describeConfig(cfg config.Config, loaded time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# loaded %s\n", loaded.UTC().Format(time.RFC3339))
	for _, f := range config.Describe(cfg) {
		fmt.Fprintf(&b, "%-26s %s\n", f.Path, f.Value)
	}
	return b.String()
}

// tokens are the API's bearer tokens, one per scope.
func tokens(h config.HTTP) api.Tokens {
	return api.Tokens{Admin: h.Token, Write: h.WriteToken, Read: h.ReadToken}
}
