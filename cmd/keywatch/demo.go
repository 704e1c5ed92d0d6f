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
  - simulated gateway traffic: 40 clients and their keys, a realistic mix of outcomes, one key
    rotation in progress (acme-billing moving from kid_live_acme_old to kid_live_acme_new, with
    one nightly job that stays on the old key), raw API keys from some gateways, and a trickle of
    malformed messages,
  - keywatch itself ('keywatch run') ingesting all of it.

A progress line shows events sent and stored, dead letters and the rotation's progress. Ctrl-C
stops everything cleanly; the data stays in --data and 'keywatch clickhouse-server' serves it.
keywatch's own log goes to --data/keywatch.log.`

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--data DIR] [--rate N] [--duration D]", demoDescription, stderr)
	data := fs.String("data", "demo-data", "`folder` for ClickHouse data and keywatch's log")
	rate := fs.Int("rate", 2000, "simulated authentication events per second")
	duration := fs.Duration("duration", 0, "stop after this long (0: run until Ctrl-C)")
	listen := fs.String("http", "127.0.0.1:9464", "address for /metrics, /healthz and /readyz (empty: none)")
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
	rot := traffic.Rotation()
	say("simulating %d events/s; rotation of %s: %s → %s, grace until %s", *rate, rot.ClientID, rot.OldKeyID, rot.NewKeyID, rot.GraceUntil.Format(time.TimeOnly))
	var sent atomic.Int64
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	simErr := make(chan error, 1)
	go func() {
		w := kafka.Writer("")
		defer w.Close()
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
		case <-ticker.C:
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

// progress prints one line a second: on a terminal it rewrites the line in place.
type progress struct {
	out       io.Writer
	tty       bool
	lastSent  int64
	lastAt    time.Duration
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
