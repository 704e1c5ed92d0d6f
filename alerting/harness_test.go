package alerting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

// t0 is the tests' clock origin: every time is t0 plus an offset, and evaluations are given it.
var t0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// env is a migrated database of the test's own with a recording Notifier and Actor.
type env struct {
	t        *testing.T
	conn     driver.Conn
	store    *finding.Store
	cfg      config.Alerting
	slack    config.Slack
	notifier *recorder
	actor    *recActor
	runs     int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	_, conn := schematest.NewDatabase(t, ch)
	a := config.Default().Alerting
	a.GroupWait = 0
	a.Inhibit = nil
	a.For = map[string]config.Duration{"default": 0}
	return &env{
		t: t, conn: conn, store: finding.NewStore(conn), cfg: a,
		slack:    config.Slack{DefaultChannel: "#keywatch"},
		notifier: &recorder{}, actor: &recActor{},
	}
}

// evaluator is a new Evaluator over the database, as after a (re)start.
func (e *env) evaluator() *Evaluator {
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("KEYWATCH_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return New(e.conn, e.cfg, e.slack, e.notifier, e.actor, nil, log)
}

// run stores one run of detector at t0+at, failed when errText is set, finding fs.
func (e *env) run(detector string, at time.Duration, errText string, fs ...finding.Finding) {
	e.t.Helper()
	e.runs++
	r := finding.Run{ID: fmt.Sprintf("run-%d", e.runs), Detector: detector, Started: t0.Add(at), Finished: t0.Add(at + time.Second)}
	if errText != "" {
		r.Err = errors.New(errText)
	}
	for _, f := range fs {
		f.DetectedAt = r.Started
		r.Findings = append(r.Findings, f)
	}
	if err := e.store.StoreRun(context.Background(), r); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) eval(ev *Evaluator, at time.Duration) {
	e.t.Helper()
	if err := ev.Evaluate(context.Background(), t0.Add(at)); err != nil {
		e.t.Fatal(err)
	}
}

// alert reads the stored alert of fingerprint fp (zero State: none).
func (e *env) alert(fp string) Alert {
	e.t.Helper()
	all, err := loadAlerts(context.Background(), e.conn, time.Time{})
	if err != nil {
		e.t.Fatal(err)
	}
	return all[fp].Alert
}

// newFinding is a finding of detector on key/client/rotation.
func newFinding(detector, key, client, rotation string, sev finding.Severity) finding.Finding {
	return finding.Finding{
		Detector: detector, Fingerprint: finding.Fingerprint(detector, key, client, rotation), Severity: sev, Score: 10,
		KeyID: key, ClientID: client, RotationID: rotation, Summary: detector + " on " + key,
		Evidence: map[string]any{"requests": 42},
	}
}

// recorder is a Notifier that keeps what it is told; fail makes it refuse.
type recorder struct {
	mu   sync.Mutex
	got  []Notification
	fail error
}

func (r *recorder) Notify(_ context.Context, n Notification) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.got = append(r.got, n)
	return nil
}

// take returns the notifications since the last take.
func (r *recorder) take() []Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

// recActor decides dry-run for every alert it is asked about; fail makes it error.
type recActor struct {
	mu    sync.Mutex
	asked []string // alert ids
	fail  error
	mode  string // the policy mode it answers; empty: dry-run
}

func (a *recActor) Consider(_ context.Context, al Alert) (*ActionStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, al.ID())
	if a.fail != nil {
		return nil, a.fail
	}
	if a.mode == "auto" {
		return &ActionStatus{ID: "act-" + al.ID(), Kind: "revoke", Mode: "auto", Status: "sent"}, nil
	}
	return &ActionStatus{ID: "act-" + al.ID(), Kind: "revoke", Mode: "dry-run", Status: "dry_run"}, nil
}

func (a *recActor) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.asked
	a.asked = nil
	return out
}

// summary lists notifications as "channel group state... [reminder]" for comparisons.
func summary(ns []Notification) []string {
	var out []string
	for _, n := range ns {
		s := n.Channel + " " + n.Group.Key
		for _, a := range n.Group.Alerts {
			s += " " + a.ClientID + "=" + string(a.State)
			if muted(a) {
				s += "(muted)"
			}
		}
		if n.Group.Resolved {
			s += " resolved"
		}
		if n.Reminder {
			s += " reminder"
		}
		out = append(out, s)
	}
	return out
}
