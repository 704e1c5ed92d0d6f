package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/internal/simulate"
	"github.com/keywatch/keywatch/internal/testbed"
)

const demoDescription = `
Run keywatch end to end on this machine, with nothing to install or configure:

  - a real ClickHouse server from the embedded library (data kept in --data/clickhouse),
  - an in-process Kafka broker (topics auth-events and key-lifecycle, 4 partitions each),
  - simulated gateway traffic: 40 clients and their keys, a realistic mix of outcomes, raw API
    keys from some gateways, a trickle of malformed messages, and --history of past traffic
    (networks and countries from MMDB files the demo writes) for the detectors' baselines,
  - three things going wrong:
      acme-billing rotates from kid_live_acme_old to kid_live_acme_new with a 30-minute grace
        period, and one nightly job stays on the old key (lingering clients);
      after 1 minute globex-billing's old key is revoked early while globex still uses it
        (failure spike after a rollover);
      after 90 s initech-billing's key is used from a network and country it never used
        (leak-like usage),
  - keywatch itself ('keywatch run') ingesting all of it and running its detectors every 10 s.

A progress line shows events sent and stored, dead letters and the rotation's progress; each new
finding is printed as it appears. Ctrl-C stops everything cleanly; the data stays in --data and
'keywatch clickhouse-server' serves it. keywatch's own log goes to --data/keywatch.log.`

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--data DIR] [--rate N] [--duration D]", demoDescription, stderr)
	data := fs.String("data", "demo-data", "`folder` for ClickHouse data and keywatch's log")
	rate := fs.Int("rate", 2000, "simulated authentication events per second")
	duration := fs.Duration("duration", 0, "stop after this long (0: run until Ctrl-C)")
	listen := fs.String("http", "127.0.0.1:9464", "address for /metrics, /healthz and /readyz (empty: none)")
	history := fs.Duration("history", 72*time.Hour, "simulated past traffic written before the live traffic starts")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rate < 1 {
		return usageError{errors.New("--rate must be at least 1")}
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	dir, err := filepath.Abs(*data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	started := time.Now()
	say := func(format string, a ...any) {
		fmt.Fprintf(stdout, "[%5.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, a...))
	}

	say("starting ClickHouse (data in %s)", filepath.Join(dir, "clickhouse"))
	ch, err := testbed.StartClickHouse(ctx, testbed.ClickHouseOptions{Dir: filepath.Join(dir, "clickhouse")})
	if err != nil {
		return err
	}
	defer ch.Stop()
	say("ClickHouse ready: native %s, http://%s/play", ch.Addr, ch.HTTPAddr)

	const authTopic, lifecycleTopic = "auth-events", "key-lifecycle"
	kafka, err := testbed.StartKafka(4, authTopic, lifecycleTopic)
	if err != nil {
		return err
	}
	defer kafka.Close()
	say("Kafka broker ready: %v", kafka.Brokers)

	cfg := config.Default()
	cfg.Kafka.Brokers = kafka.Brokers
	cfg.ClickHouse.Addr = []string{ch.Addr}
	cfg.Fingerprint.Key = "keywatch-demo-fingerprint-key" // a real deployment reads it from env or a file
	cfg.Ingest.BatchMaxWait = config.Duration(500 * time.Millisecond)
	cfg.HTTP.Listen = *listen
	cfg.Log.Format = "json"
	if cfg.Geo.ASNDatabase, cfg.Geo.CountryDatabase, err = simulate.WriteGeo(dir); err != nil {
		return err
	}
	for _, schedule := range []*string{&cfg.Detect.Lingering.Schedule, &cfg.Detect.Spike.Schedule, &cfg.Detect.Leak.Schedule, &cfg.Detect.Hygiene.Schedule} {
		*schedule = "@every 10s"
	}
	// Alerts fire and show at once; leak alerts get a dry-run revoke (the default policy), which
	// the demo prints from the audit table. Without a Slack token the messages wait in the outbox.
	cfg.Alerting.EvaluateInterval = config.Duration(5 * time.Second)
	cfg.Alerting.GroupWait = 0
	cfg.Alerting.For = map[string]config.Duration{"default": 0}
	logFile, err := os.OpenFile(filepath.Join(dir, "keywatch.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := newLogger(cfg.Log, logFile)

	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr <- serve(runCtx, cfg, log, prometheus.NewRegistry())
	}()
	switch {
	case *listen == "":
		say("keywatch running: log in %s", logFile.Name())
	case strings.HasSuffix(*listen, ":0"):
		say("keywatch running: metrics on a free port (its address is in %s)", logFile.Name())
	default:
		say("keywatch running: metrics at http://%s/metrics, log in %s", *listen, logFile.Name())
	}

	conn, err := schema.Open(cfg.ClickHouse, cfg.ClickHouse.Database)
	if err != nil {
		return err
	}
	defer conn.Close()

	traffic := simulate.New(uint64(time.Now().UnixNano()), time.Now().UTC())
	rot, in := traffic.Rotation(), traffic.Incidents()
	var sent atomic.Int64
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	simErr := make(chan error, 1)
	notes := make(chan string, 4)
	go func() {
		say := func(format string, a ...any) {
			notes <- fmt.Sprintf("[%5.1fs] %s", time.Since(started).Seconds(), fmt.Sprintf(format, a...))
		}
		w := kafka.Writer("")
		defer w.Close()
		if *history > 0 {
			n, err := traffic.History(simCtx, w, authTopic, *history, 20)
			if err != nil {
				simErr <- err
				return
			}
			sent.Add(int64(n))
			say("wrote %s of history (%d events)", *history, n)
		}
		say("simulating %d events/s; rotation of %s: %s → %s, grace until %s", *rate, rot.ClientID, rot.OldKeyID, rot.NewKeyID, rot.GraceUntil.Format(time.TimeOnly))
		say("coming up: %s revoked at %s while %s still uses it; %s used from a new network from %s",
			in.Revoked.OldKeyID, in.RevokedAt.Format(time.TimeOnly), in.Revoked.ClientID, in.LeakedKeyID, in.LeakFrom.Format(time.TimeOnly))
		simErr <- traffic.Run(simCtx, w, authTopic, lifecycleTopic, *rate, func(n int) { sent.Add(int64(n)) })
	}()

	progress := newProgress(stdout)
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-simErr:
			runErr = err
			break loop
		case err := <-serveErr:
			runErr = fmt.Errorf("keywatch stopped: %v (see %s)", err, logFile.Name())
			break loop
		case <-ch.Exited():
			runErr = fmt.Errorf("clickhouse stopped: %s", ch.Stderr())
			break loop
		case note := <-notes:
			progress.note(note)
		case <-ticker.C:
			progress.alerts(ctx, conn, time.Since(started))
			progress.show(ctx, conn, time.Since(started), sent.Load(), rot)
		}
	}
	progress.done()
	say("stopping: simulator, then keywatch (storing its last batch), broker and ClickHouse")
	stopSim()
	stopRun()
	wg.Wait()
	final := context.Background()
	stored := count(final, conn, "SELECT count() FROM auth_events")
	dead := count(final, conn, "SELECT count() FROM dead_letters")
	say("sent %d events; ClickHouse holds %d events and %d dead letters", sent.Load(), stored, dead)
	conn.Close()
	ch.Stop()
	fmt.Fprintf(stdout, "\nThe data stays in %s. To query it:\n  keywatch clickhouse-server --data %s\n  curl 'http://127.0.0.1:8123/?query=SELECT+outcome,count()+FROM+keywatch.auth_events+GROUP+BY+outcome'\n",
		filepath.Join(dir, "clickhouse"), filepath.Join(dir, "clickhouse"))
	return runErr
}

// progress prints one line a second (on a terminal it rewrites the line in place), and a line for
// each new finding.
type progress struct {
	out       io.Writer
	tty       bool
	lastSent  int64
	lastAt    time.Duration
	wroteLine bool
	seen      map[string]bool // alert states and audit rows printed
}

func newProgress(out io.Writer) *progress {
	p := &progress{out: out, seen: map[string]bool{}}
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) show(ctx context.Context, conn driver.Conn, elapsed time.Duration, sent int64, rot simulate.Rotation) {
	qctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	stored := count(qctx, conn, "SELECT count() FROM auth_events")
	dead := count(qctx, conn, "SELECT count() FROM dead_letters")
	var onNew float64
	_ = conn.QueryRow(qctx, `SELECT sumIf(requests, key_id = ?) / greatest(sum(requests), 1)
		FROM auth_events_1m WHERE client_id = ? AND key_id IN (?, ?) AND minute >= now() - INTERVAL 1 MINUTE`,
		rot.NewKeyID, rot.ClientID, rot.OldKeyID, rot.NewKeyID).Scan(&onNew)
	rate := float64(sent-p.lastSent) / max((elapsed-p.lastAt).Seconds(), 0.001)
	p.lastSent, p.lastAt = sent, elapsed
	line := fmt.Sprintf("[%5.1fs] sent %d events (%.0f/s) | stored %d | dead letters %d | %s on new key: %.0f%% (last minute)",
		elapsed.Seconds(), sent, rate, stored, dead, rot.ClientID, 100*onNew)
	if p.tty {
		fmt.Fprintf(p.out, "\r\033[K%s", line)
		p.wroteLine = true
		return
	}
	fmt.Fprintln(p.out, line)
}

// note prints a line of its own above the progress line.
func (p *progress) note(line string) {
	if p.wroteLine {
		fmt.Fprint(p.out, "\r\033[K")
		p.wroteLine = false
	}
	fmt.Fprintln(p.out, line)
}

// selectAlerts returns every alert's current state.
const selectAlerts = `
SELECT fingerprint, toString(state), toString(severity), detector, summary
FROM alerts FINAL
ORDER BY severity DESC, detector, key_id`

// selectAudit returns the revoke decisions, oldest first.
const selectAudit = `
SELECT action_id, event, guardrail, key_id, detail
FROM action_audit
ORDER BY at`

// alerts prints what alerting and the revoke policy did since the last call: alerts that changed
// state (pending, firing, resolved) and revoke decisions (in the demo: dry runs).
func (p *progress) alerts(ctx context.Context, conn driver.Conn, elapsed time.Duration) {
	qctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	if rows, err := conn.Query(qctx, selectAlerts); err == nil {
		for rows.Next() {
			var fingerprint, state, severity, detector, summary string
			if rows.Scan(&fingerprint, &state, &severity, &detector, &summary) != nil || p.seen[fingerprint+state+severity] {
				continue
			}
			p.seen[fingerprint+state+severity] = true
			p.note(fmt.Sprintf("[%5.1fs] ALERT %-8s %-8s %-9s %s", elapsed.Seconds(), state, severity, detector, summary))
		}
		rows.Close()
	}
	if rows, err := conn.Query(qctx, selectAudit); err == nil {
		for rows.Next() {
			var id, event, guardrail, key, detail string
			if rows.Scan(&id, &event, &guardrail, &key, &detail) != nil || p.seen[id+event+guardrail] {
				continue
			}
			p.seen[id+event+guardrail] = true
			p.note(fmt.Sprintf("[%5.1fs] REVOKE %-8s %s %s %s (action_audit)", elapsed.Seconds(), event, key, guardrail, detail))
		}
		rows.Close()
	}
}

func (p *progress) done() {
	if p.wroteLine {
		fmt.Fprintln(p.out)
	}
}

func count(ctx context.Context, conn driver.Conn, query string) uint64 {
	var n uint64
	_ = conn.QueryRow(ctx, query).Scan(&n)
	return n
}
