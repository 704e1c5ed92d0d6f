package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keywatch/keywatch/app"
	"github.com/keywatch/keywatch/internal/config"
)

const runDescription = `
Run the keywatch daemon. The HTTP listener (http.listen, default :8466; HTTPS with http.tls.*)
comes up first, and with it the admin listener (http.admin_listen) when set, which then serves
/metrics, /healthz and /readyz instead: /healthz and /-/healthy answer 200 while the process
lives, /readyz and /-/ready answer 503 naming what is not ready yet (clickhouse, schema, kafka,
ingest) until everything is (the errors only on the admin listener or to a bearer token).
Then it waits for ClickHouse (clickhouse.secure for TLS), applies the schema, checks that the
brokers accept its TLS and SASL settings (kafka.tls.*, kafka.sasl.*; a wrong password or CA is
logged and shown on /readyz, naming the setting), and consumes the authentication and key
lifecycle topics as a member of the consumer group, storing every event in ClickHouse. Malformed
messages go to the dead_letters table with the reason.

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

Offsets are committed only after ClickHouse has stored the batch that holds them and its rollups
(every ingest.rollup_interval); while ClickHouse is unreachable, fetching pauses and the insert is
retried with backoff. On SIGTERM or Ctrl-C the batch in flight is stored (or left uncommitted) and
the process exits 0.

Unless GOMEMLIMIT is set, the Go runtime's soft memory limit is 160 MiB: the garbage collector
works harder near it rather than let the heap double, which keeps the process near 200 MB at the
default ingest settings. Set GOMEMLIMIT (for example to 80% of a container's memory limit) when
ingest.batch_max_rows or ingest.insert_concurrency is raised.

SIGHUP or POST /-/reload (bearer token) reads the file and the secret files again and applies what
can change live: detector schedules and thresholds, alerting, Slack routes, silences from the file,
revoke and rollback policies, leak reports, digests, the API token; the HTTP certificate files are
read again too. A file with errors is refused with every problem named, and so is a change to a
setting that needs a restart (kafka.*, clickhouse.*, ingest.*, geo.*, fingerprint.*, retention.*,
http.listen, http.admin_listen, http.tls.*, http timeouts and limits, leader.*, log.*); the
running configuration then stays.
keywatch_config_last_reload_successful says how the last attempt went; GET /-/config (bearer
token) shows the configuration in effect, secrets hidden.

Requests must arrive within http.read_timeout; tokens and signatures are checked before a body
is read, and refusals are counted (keywatch_http_refused_total) and logged a few a minute, never
stored. Bearer tokens have scopes: http.token (admin), http.write_token, http.read_token.

With a bearer token (KEYWATCH_HTTP_TOKEN or http.token_file) the listener also serves POST
/v1/lifecycle (a lifecycle event, contract 3.2), GET /v1/keys/{id}/readiness (is the key safe to
retire?), POST /v1/keys/{id}/revoke (a manual revoke, through the same guardrails), POST
/v1/keys/{id}/rollback (extend_grace or reactivate) and GET/POST/DELETE /v1/silences. POST /v1/leaks
takes leak reports (GitHub secret scanning signatures, or leak_reports.token) and
POST /slack/interactions the "Revoke now" and "Roll back" buttons (Slack's request signature).
A failure spike after a retire or revoke step offers a rollback under the rollback.* policy.`

// defaultMemoryLimit is the runtime's soft memory limit unless GOMEMLIMIT sets one: the live heap
// at the default ingest settings (two batches of 50,000 events, the rollups of two seconds) stays
// below it, and without a limit the heap grows to twice the live heap between collections.
const defaultMemoryLimit = 160 << 20

func runCmd(ctx context.Context, args []string, _ io.Writer, stderr io.Writer) error {
	cfg, path, err := parseConfig("run", runDescription, args, stderr)
	if err != nil {
		return err
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	log := app.NewLogger(cfg.Log, stderr)
	log.Info("starting keywatch", "version", versionString())
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	load := func() (config.Config, error) { return config.Load(path, os.Environ()) }
	err = app.Run(ctx, cfg, app.Options{
		Log: log, Registry: prometheus.NewRegistry(), Version: version, Revision: revision(),
		Reload: &app.Reloads{Load: load, Signals: hup},
	})
	if errors.As(err, new(app.ConfigError)) {
		return usageError{err}
	}
	return err
}
