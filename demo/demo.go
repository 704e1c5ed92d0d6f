// Package demo owns `make demo`: keywatch run end to end on one machine with nothing to install
// (an embedded ClickHouse, an in-process Kafka broker, a local Slack stand-in and webhook receiver),
// four scripted stories of simulated traffic (package demo/simulate), and the terminal rendering of
// what keywatch sends. It is a program of its own (cmd/keywatch-demo), never linked into the
// production binary; it runs the daemon through package app like `keywatch run` does.
package demo

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

	"github.com/keywatch/keywatch/app"
	"github.com/keywatch/keywatch/demo/simulate"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/internal/testbed"
)

// Description is what the demo does, for its --help.
const Description = `
Run keywatch end to end on this machine, with nothing to install or configure, and tell four
stories with simulated gateway traffic, each announced as it starts (times from the start of
live traffic):

  0. normal use: 40 clients, keywatch's hygiene detector flags old and unused keys;
  1. at 12 s  umbrella-billing rotates its key and all its callers move within 15 s: readiness
              turns safe and the old key is retired (the readiness answer is printed);
  2. at 42 s  acme-billing rotates (grace period 30 minutes), but its nightly export job stays on
              the old key: a lingering alert, and readiness answers unsafe, naming the straggler;
  3. at 72 s  globex-billing's old key is revoked while globex still uses it: a failure-spike alert;
  4. at 102 s initech-billing's key is used from a network and country it never used: a leak alert
              and an emergency revoke decision for a webhook receiver the demo runs on loopback
              (--revoke dry-run, the default: audited as "would revoke", nothing is sent;
              --revoke auto: sent, signed, and the receiver prints the verified request).

What runs: a real ClickHouse server from the embedded library (data kept in --data/clickhouse), an
in-process Kafka broker (topics auth-events and key-lifecycle), 40 simulated clients with --history
of past traffic (networks and countries from MMDB files the demo writes) for the detectors'
baselines, and keywatch itself (what 'keywatch run' runs: ingest, detectors every 5 s, alerting, the Slack
and revoke senders). Alerts appear as the Slack messages they are, rendered as plain text from the
same Block Kit blocks: the Slack sender talks to a local stand-in of the Slack API. With
KEYWATCH_SLACK_TOKEN set, the stand-in also passes every call on to Slack, so the messages land in
--slack-channel too (invite the bot there).

The demo stops after --duration, or 15 s after the fourth story showed; Ctrl-C stops it earlier.
The data stays in --data until the next demo replaces it; the end of the output says how to query
it and open the Grafana dashboards on it. keywatch's own log goes to --data/keywatch.log.`

// demoStories are the stories' titles, by simulate's story number.
var demoStories = map[int]string{
	simulate.StoryCleanRotation: "a rotation completes cleanly",
	simulate.StoryLingering:     "a client lingers on its old key",
	simulate.StoryRevokedInUse:  "a revocation breaks a client",
	simulate.StoryLeak:          "a key leaks to a new network",
}

// Options are the demo's flags.
type Options struct {
	// Data is the folder of ClickHouse's data and keywatch's log.
	Data string
	// Rate is the simulated authentication events per second (at least 1).
	Rate int
	// Duration stops the demo after this long at the latest; 0: at Ctrl-C.
	Duration time.Duration
	// Listen is the address of keywatch's HTTP listener; empty: none.
	Listen string
	// History is the simulated past traffic written before the live traffic starts.
	History time.Duration
	// Revoke is the revoke policy of leak alerts: dry-run or auto.
	Revoke string
	// SlackChannel is the channel of the alerts.
	SlackChannel string
}

// Check says what is wrong with opts, naming the flag.
func (o Options) Check() error {
	if o.Rate < 1 {
		return errors.New("--rate must be at least 1")
	}
	if o.Revoke != "dry-run" && o.Revoke != "auto" {
		return fmt.Errorf("--revoke %q: want dry-run or auto", o.Revoke)
	}
	return nil
}

// Run runs the demo until opts.Duration, the end of the stories or ctx, writing what happens to
// stdout.
func Run(ctx context.Context, opts Options, stdout io.Writer) error {
	if err := opts.Check(); err != nil {
		return err
	}
	data, rate, duration, listen, history, revokeMode, channel := &opts.Data, &opts.Rate, &opts.Duration, &opts.Listen, &opts.History, &opts.Revoke, &opts.SlackChannel
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
	d := &demo{
		out: newProgress(stdout), started: time.Now(), notes: make(chan string, 1024), quit: make(chan struct{}),
		stories: map[int]*demoStory{}, revokeMode: *revokeMode,
	}
	for n := range demoStories {
		d.stories[n] = &demoStory{}
	}
	say := func(format string, a ...any) { d.out.note(d.stamp() + fmt.Sprintf(format, a...)) }

	say("starting ClickHouse (data in %s)", filepath.Join(dir, "clickhouse"))
	ch, err := testbed.StartClickHouse(ctx, testbed.ClickHouseOptions{Dir: filepath.Join(dir, "clickhouse")})
	if err != nil {
		return err
	}
	defer ch.Stop()
	say("ClickHouse ready: native %s, http://%s/play", ch.Addr, ch.HTTPAddr)

	const authTopic, lifecycleTopic = "auth-events", "key-lifecycle"
	kafkaBroker, err := testbed.StartKafka(4, authTopic, lifecycleTopic)
	if err != nil {
		return err
	}
	defer kafkaBroker.Close()
	say("Kafka broker ready: %v", kafkaBroker.Brokers)

	receiver := newDemoReceiver(demoWebhookSecret, d.received)
	receiverURL, stopReceiver, err := serveLocal(receiver)
	if err != nil {
		return err
	}
	defer stopReceiver()
	receiverURL += "/revoke"
	d.receiver = receiverURL
	say("revoke webhook receiver (the key-management system's stand-in) at %s, secret %s", receiverURL, demoWebhookSecret)

	token, upstream := os.Getenv("KEYWATCH_SLACK_TOKEN"), ""
	if token != "" {
		upstream = "https://slack.com/api/"
		if u := os.Getenv("KEYWATCH_SLACK_API_URL"); u != "" {
			upstream = u
		}
	} else {
		token = "xoxb-keywatch-demo-local"
	}
	slackURL, stopSlack, err := serveLocal(newTerminalSlack(upstream, func(s string) { d.note(d.stamp() + s) }))
	if err != nil {
		return err
	}
	defer stopSlack()
	if upstream != "" {
		say("Slack: messages to %s are shown here and posted to Slack (KEYWATCH_SLACK_TOKEN is set)", *channel)
	} else {
		say("Slack: messages to %s are shown here (set KEYWATCH_SLACK_TOKEN to post them to Slack too)", *channel)
	}

	cfg := demoConfig(kafkaBroker.Brokers, ch.Addr, *listen)
	if err := dropDemoDatabase(ctx, cfg.ClickHouse); err != nil {
		return err
	}
	cfg.Slack.Token, cfg.Slack.APIURL, cfg.Slack.DefaultChannel = token, slackURL+"/", *channel
	cfg.Revoke.WebhookURL, cfg.Revoke.WebhookSecret = receiverURL, demoWebhookSecret
	cfg.Revoke.Policies = []config.RevokePolicy{{Detector: "leak*", Mode: *revokeMode}}
	if cfg.Geo.ASNDatabase, cfg.Geo.CountryDatabase, err = simulate.WriteGeo(dir); err != nil {
		return err
	}
	d.quietFor = time.Duration(cfg.Detect.Lingering.QuietFor)
	logFile, err := os.OpenFile(filepath.Join(dir, "keywatch.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := app.NewLogger(cfg.Log, logFile)

	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr <- app.Run(runCtx, cfg, app.Options{Log: log, Registry: prometheus.NewRegistry(), Version: "demo"})
	}()
	switch {
	case *listen == "":
		say("keywatch running: log in %s", logFile.Name())
	case strings.HasSuffix(*listen, ":0"):
		say("keywatch running: metrics on a free port (its address is in %s)", logFile.Name())
	default:
		say("keywatch running: metrics at http://%s/metrics, log in %s", *listen, logFile.Name())
		say("web console: http://%s/console/ (sign in with any name and the token %s; it stops with the demo, --duration 0 keeps it)", *listen, demoConsoleToken)
	}

	conn, err := schema.Open(cfg.ClickHouse, cfg.ClickHouse.Database)
	if err != nil {
		return err
	}
	defer conn.Close()
	d.conn, d.lingering = conn, detect.NewLingering(conn, cfg.Detect.Lingering)
	d.lifecycle = kafkaBroker.Writer(lifecycleTopic)
	defer d.lifecycle.Close()

	traffic := simulate.New(uint64(time.Now().UnixNano()), time.Now().UTC())
	d.clean, d.lingerRot, d.incidents = traffic.CleanRotation(), traffic.Rotation(), traffic.Incidents()
	var sent atomic.Int64
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	storyCtx, stopStories := context.WithCancel(ctx)
	defer stopStories()
	simErr := make(chan error, 1)
	go func() {
		w := kafkaBroker.Writer("")
		defer w.Close()
		if *history > 0 {
			d.note(d.stamp() + fmt.Sprintf("writing %s of past traffic (the detectors' baselines)...", hours(*history)))
			n, err := traffic.History(simCtx, w, authTopic, *history, 20)
			if err != nil {
				simErr <- err
				return
			}
			sent.Add(int64(n))
			d.note(d.stamp() + fmt.Sprintf("wrote %s of history (%d events)", hours(*history), n))
		}
		d.note(d.stamp() + "══ Normal use ══\n" + indent(fmt.Sprintf("live traffic: %d events/s from 40 clients, a few of them busy, most quiet; about 2%% of requests fail as usual, 1 in 500 messages is malformed (dead letters). keywatch's hygiene detector flags keys never used or older than 90 days (one line each). The four stories follow, one every 30 s.", *rate)))
		simErr <- traffic.Run(simCtx, w, authTopic, lifecycleTopic, *rate, func(n int) { sent.Add(int64(n)) },
			func(s simulate.Step) { d.step(storyCtx, s) })
	}()

	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var runErr error
	var allShownAt time.Time
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
			runErr = ch.Gone()
			break loop
		case note := <-d.notes:
			d.out.note(note)
		case <-ticker.C:
			d.watch(ctx)
			d.drain()
			d.out.show(ctx, conn, time.Since(d.started), sent.Load(), d.clean, d.lingerRot)
			if allShownAt.IsZero() && d.allShown() {
				allShownAt = time.Now()
				say("all four stories shown; the demo stops in 15 s (Ctrl-C stops it now)")
			}
			if *duration > 0 && !allShownAt.IsZero() && time.Since(allShownAt) >= 15*time.Second {
				break loop
			}
		}
	}
	stopStories()
	storiesDone := make(chan struct{})
	go func() { d.wg.Wait(); close(storiesDone) }()
	for waiting := true; waiting; {
		select {
		case n := <-d.notes:
			d.out.note(n)
		case <-storiesDone:
			waiting = false
		}
	}
	d.drain()
	d.out.done()
	close(d.quit)
	say("stopping: simulator, then keywatch (storing its last batch), broker and ClickHouse")
	stopSim()
	stopRun()
	wg.Wait()
	final := context.Background()
	totals, _ := ingest.ReadTotals(final, conn)
	say("sent %d events; ClickHouse holds %d events and %d dead letters", sent.Load(), totals.Events, totals.DeadLetters)
	conn.Close()
	ch.Stop()
	d.summary(stdout)
	printDemoData(stdout, dir)
	return runErr
}

// demoConsoleToken is the demo's admin token: the web console's sign-in and the /v1 API's token.
const demoConsoleToken = "keywatch-demo-admin-token-0123456789"

// demoConfig is keywatch's configuration in the demo: tuned so that every story shows within
// seconds on a busy two-core machine.
func demoConfig(brokers []string, clickhouse, listen string) config.Config {
	cfg := config.Default()
	cfg.Kafka.Brokers = brokers
	cfg.ClickHouse.Addr = []string{clickhouse}
	cfg.Fingerprint.Key = "keywatch-demo-fingerprint-key" // a real deployment reads it from env or a file
	cfg.Ingest.BatchMaxWait = config.Duration(500 * time.Millisecond)
	cfg.HTTP.Listen = listen
	// The web console: the demo's admin token signs in (a real one comes from KEYWATCH_HTTP_TOKEN
	// and KEYWATCH_CONSOLE_SESSION_KEY, or their files).
	cfg.HTTP.Token, cfg.Console.SessionKey = demoConsoleToken, "keywatch-demo-console-session-key-0123"
	cfg.Log.Format = "json"
	cfg.Leader.Enabled = false // one replica
	for _, schedule := range []*string{&cfg.Detect.Lingering.Schedule, &cfg.Detect.Spike.Schedule, &cfg.Detect.Leak.Schedule} {
		*schedule = "@every 5s"
	}
	cfg.Detect.Hygiene.Schedule = "@every 2s" // its alerts show once, during normal use
	// Readiness releases a caller that moved this long after its last old-key call (default 1 h).
	cfg.Detect.Lingering.QuietFor = config.Duration(10 * time.Second)
	// The "safe to retire" message of story 1 is looked for every 2 s; no scheduled digest.
	cfg.Digest.Schedule, cfg.Digest.NudgeSchedule = "", "@every 2s"
	// Alerts fire at once, except leak alerts: they wait for a second detector run, so that the
	// revoke decision (made once per alert) sees the whole burst's score.
	cfg.Alerting.EvaluateInterval = config.Duration(2 * time.Second)
	cfg.Alerting.For = map[string]config.Duration{"default": 0, "leak": config.Duration(8 * time.Second)}
	cfg.Alerting.GroupWait = 0
	cfg.Alerting.GroupInterval = config.Duration(2 * time.Second) // a group's changes (alerts join, revoke status) show at once
	cfg.Slack.GrafanaURL = "http://localhost:3000/d/keywatch-rotation-overview"
	return cfg
}

// dropDemoDatabase removes what an earlier demo left in the data folder: its Kafka topics are
// gone (the broker is in-process), so its offsets, alerts and actions would only confuse this run.
func dropDemoDatabase(ctx context.Context, cfg config.ClickHouse) error {
	conn, err := schema.Open(cfg, "default")
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.Database+" SYNC"); err != nil {
		return fmt.Errorf("demo: drop the previous demo's database %s: %w", cfg.Database, err)
	}
	return nil
}

// printDemoData says where the data is, how to query it and how to open the dashboards on it.
func printDemoData(w io.Writer, dir string) {
	data := filepath.Join(dir, "clickhouse")
	self := "keywatch-demo"
	if exe, err := os.Executable(); err == nil {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
				self = "./" + rel
			}
		}
	}
	dashboards := "dashboards"
	if abs, err := filepath.Abs("dashboards/provisioning"); err == nil {
		if _, err := os.Stat(abs); err == nil {
			dashboards = filepath.Dir(abs)
		}
	}
	fmt.Fprintf(w, `
The data stays in %[1]s (database keywatch). To query it, serve it again:
  %[2]s clickhouse-server --data %[1]s      # native 127.0.0.1:9000, HTTP 127.0.0.1:8123
  curl 'http://127.0.0.1:8123/?query=SELECT+detector,state,severity,summary+FROM+keywatch.alerts+FINAL+FORMAT+PrettyCompact'
  or open http://127.0.0.1:8123/play (tables: auth_events, findings, alerts, notifications, action_audit, ...)

Dashboards: while that server runs, start Grafana with keywatch's provisioning (Docker; the data
source reads the CLICKHOUSE_* variables, docs/dashboards.md):
  docker run --rm --network host -e GF_INSTALL_PLUGINS=grafana-clickhouse-datasource \
    -e CLICKHOUSE_HOST=127.0.0.1 -e CLICKHOUSE_PORT=9000 -e CLICKHOUSE_USER=default -e CLICKHOUSE_PASSWORD= \
    -e CLICKHOUSE_SECURE=false -e CLICKHOUSE_TLS_SKIP_VERIFY=false -e CLICKHOUSE_TLS_WITH_CA_CERT=false \
    -v %[3]s/provisioning:/etc/grafana/provisioning:ro \
    -v %[3]s:/var/lib/grafana/dashboards/keywatch:ro grafana/grafana:12.2.0
  then open http://localhost:3000/d/keywatch-rotation-overview (admin / admin; folder "keywatch":
  rotation overview, lingering, failures, leak, alerts, pipeline).
`, data, self, dashboards)
}

// progress prints one line a second (on a terminal it rewrites the line in place), and notes
// above it.
type progress struct {
	out       io.Writer
	tty       bool
	lastSent  int64
	lastAt    time.Duration
	lastLine  time.Duration // when the last line was printed, when not a terminal
	wroteLine bool
}

func newProgress(out io.Writer) *progress {
	p := &progress{out: out}
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) show(ctx context.Context, conn driver.Conn, elapsed time.Duration, sent int64, rots ...simulate.Rotation) {
	qctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	totals, _ := ingest.ReadTotals(qctx, conn)
	rate := float64(sent-p.lastSent) / max((elapsed-p.lastAt).Seconds(), 0.001)
	p.lastSent, p.lastAt = sent, elapsed
	line := fmt.Sprintf("[%5.1fs] sent %d events (%.0f/s) | stored %d | dead letters %d", elapsed.Seconds(), sent, rate, totals.Events, totals.DeadLetters)
	for _, r := range rots {
		onNew, _ := ingest.ShareOnKey(qctx, conn, r.NewKeyID, r.OldKeyID, time.Now().Add(-10*time.Second))
		line += fmt.Sprintf(" | %s on new key %.0f%%", strings.TrimSuffix(r.ClientID, "-billing"), 100*onNew)
	}
	if p.tty {
		fmt.Fprintf(p.out, "\r\033[K%s", line)
		p.wroteLine = true
		return
	}
	// Not a terminal (a log file): one line every 10 s is enough.
	if p.lastLine == 0 || elapsed-p.lastLine >= 10*time.Second {
		p.lastLine = elapsed
		fmt.Fprintln(p.out, line)
	}
}

// note prints a line of its own above the progress line.
func (p *progress) note(line string) {
	if p.wroteLine {
		fmt.Fprint(p.out, "\r\033[K")
		p.wroteLine = false
	}
	fmt.Fprintln(p.out, line)
}

func (p *progress) done() {
	if p.wroteLine {
		fmt.Fprintln(p.out)
		p.wroteLine = false
	}
}
