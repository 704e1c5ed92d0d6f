package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// reportDetector is leakreport.Detector: each of its runs is one report about some keys, not a
// scan of all of them, so a run without a key's finding says nothing about that key.
const reportDetector = "leak_report"

// recentlyResolved is how long resolved alerts stay loaded: for their group's resolved
// notification and for keywatch_alerts{state="resolved"}.
const recentlyResolved = 24 * time.Hour

// Evaluator turns findings and detector runs into alerts, one pass at a time, and tells the
// Notifier and the Actor about them. Its state lives in ClickHouse (alerts,
// alert_notifications_state), so a new Evaluator over the same database continues where the last
// one stopped.
type Evaluator struct {
	conn     driver.Conn
	findings *finding.Store
	cfg      config.Alerting
	routes   config.Slack
	notifier Notifier
	actor    Actor
	metrics  *Metrics
	log      *slog.Logger
	silences *silenceStore
	now      func() time.Time
	// observers are told every alert after each pass (observe.go).
	observers []Observer

	// publisher, when set (WithPublisher), takes alert.firing and alert.resolved webhooks.
	publisher Publisher

	mu       sync.Mutex // one pass at a time; guards what follows
	sent     map[groupChannel]*sentState
	loaded   bool // sent was read from alert_notifications_state
	unrouted map[string]bool
}

// New returns an Evaluator over conn (a migrated database). notifier, actor and metrics may be nil.
func New(conn driver.Conn, cfg config.Alerting, routes config.Slack, notifier Notifier, actor Actor, metrics *Metrics, log *slog.Logger) *Evaluator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Evaluator{
		conn: conn, findings: finding.NewStore(conn), cfg: cfg, routes: routes, notifier: notifier, actor: actor, metrics: metrics,
		log: log.With("component", "alerting"), silences: newSilenceStore(conn, cfg.Silences), now: time.Now,
		sent: map[groupChannel]*sentState{}, unrouted: map[string]bool{},
	}
}

// Run evaluates every alerting.evaluate_interval until ctx ends. A failed pass is logged and the
// next one starts from what is stored, so nothing it missed is lost.
func (e *Evaluator) Run(ctx context.Context) error {
	t := time.NewTicker(max(time.Duration(e.cfg.EvaluateInterval), time.Second))
	defer t.Stop()
	for {
		if err := e.Evaluate(ctx, e.now()); err != nil && ctx.Err() == nil {
			e.log.Warn("alert evaluation failed; retrying next pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Evaluate runs one pass as of now: it moves alerts between states, mutes them, stores them, asks
// the Actor about firing ones and notifies groups that are due.
func (e *Evaluator) Evaluate(ctx context.Context, now time.Time) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	start := time.Now()
	err := e.evaluate(ctx, now.UTC().Truncate(time.Millisecond)) // as stored
	e.metrics.evaluated(err, time.Since(start))
	return err
}

// window bounds what is read of findings: per detector its for or resolve_after, whichever is
// longer, plus an hour.
func (e *Evaluator) window() finding.Window {
	w := finding.Window{Other: e.windowOf("default")}
	for _, m := range []map[string]config.Duration{e.cfg.For, e.cfg.ResolveAfter} {
		for det := range m {
			if det != "default" && !slices.Contains(w.Detectors, det) {
				w.Detectors = append(w.Detectors, det)
				w.Windows = append(w.Windows, e.windowOf(det))
			}
		}
	}
	return w
}

func (e *Evaluator) windowOf(detector string) time.Duration {
	return max(forOf(e.cfg, detector), resolveAfterOf(e.cfg, detector)) + time.Hour
}

func forOf(cfg config.Alerting, detector string) time.Duration {
	return durationOf(cfg.For, detector)
}

func resolveAfterOf(cfg config.Alerting, detector string) time.Duration {
	return durationOf(cfg.ResolveAfter, detector)
}

func durationOf(m map[string]config.Duration, detector string) time.Duration {
	if d, ok := m[detector]; ok {
		return time.Duration(d)
	}
	return time.Duration(m["default"])
}

func (e *Evaluator) evaluate(ctx context.Context, now time.Time) error {
	if !e.loaded {
		if err := e.loadSent(ctx, now); err != nil {
			return err
		}
		e.loaded = true
	}
	prev, err := loadAlerts(ctx, e.conn, now.Add(-recentlyResolved))
	if err != nil {
		return err
	}
	// Runs before findings: a run's findings are stored before the run, so every run read here
	// has its findings visible to the next query.
	runs, err := e.findings.Runs(ctx, now, max(e.cfg.DegradedAfter, 1))
	if err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	w := e.window()
	seen, err := lastSeen(ctx, e.conn, now.Add(-w.Longest()))
	if err != nil {
		return err
	}
	finds, err := e.findings.Latest(ctx, w, now, seen)
	if err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	silences, err := e.silences.active(ctx, now)
	if err != nil {
		return err
	}

	next := transition(prev, finds, runs, now, e.cfg)
	e.mute(next, silences)

	if err := e.store(ctx, prev, next, now); err != nil {
		return err
	}
	if e.actor != nil {
		before := map[string]stored{}
		for fp, a := range next {
			before[fp] = *a
		}
		// A silence mutes notifications only: the revoke policies and guardrails decide about a
		// silenced alert as about any other (revoke.protected_keys keeps a key from being revoked).
		// Silences may be made with a token that cannot revoke, and are often broad or forgotten:
		// they must not turn the emergency revoke off. An inhibited alert is not acted on.
		for _, a := range sortedAlerts(next) {
			if a.State != Firing || a.Inhibited != "" {
				continue
			}
			st, err := e.actor.Consider(ctx, a.Alert)
			if err != nil {
				e.log.Warn("actor failed; asking again next pass", "alert", a.ID(), "detector", a.Detector, "key", a.KeyID, "err", err)
				continue
			}
			next[a.Fingerprint].Action = st
		}
		if err := e.store(ctx, before, next, now); err != nil {
			return err
		}
	}
	e.metrics.alertsNow(next, now)
	if e.publisher != nil || len(e.observers) > 0 {
		all := sortedAlerts(next)
		e.publish(ctx, all) // from what is stored: nothing lost or doubled across restarts
		e.observe(ctx, all, now)
	}
	if e.notifier != nil {
		e.notify(ctx, next, now)
	}
	return nil
}

// transition is the alert state machine, a function of its inputs: the alerts as stored (prev),
// the latest findings of every fingerprint within its window (finds, with the first detection
// after each alert's last_seen), each detector's latest runs, newest first, and the time. It
// returns every alert as it is after now: new episodes pending, pending alerts firing once found
// for alerting.for, alerts resolved once their detector's successful runs stop finding them for
// alerting.resolve_after, and detection_degraded alerts raised and resolved (degraded). It does
// not mute (mute) and does not change prev.
func transition(prev map[string]stored, finds map[string]finding.Latest, runs map[string][]finding.Run, now time.Time, cfg config.Alerting) map[string]*stored {
	next := map[string]*stored{}
	for fp, p := range prev {
		next[fp] = &p
	}
	lastRun := map[string]string{}
	for fp, f := range finds {
		lastRun[fp] = f.RunID
		a, ok := next[fp]
		switch {
		case !ok || a.State == Resolved:
			if f.FirstAfter.IsZero() || (ok && !f.DetectedAt.After(a.LastSeen)) {
				continue // nothing found since the episode that is over
			}
			episode := &stored{Alert: alertOf(f.Finding)}
			if ok {
				episode.version = a.version
			}
			episode.State, episode.ActiveSince = Pending, f.FirstAfter
			next[fp] = episode
		default:
			latest := alertOf(f.Finding)
			a.Detector, a.KeyID, a.ClientID, a.RotationID = latest.Detector, latest.KeyID, latest.ClientID, latest.RotationID
			a.Severity, a.Score, a.Summary, a.Evidence = latest.Severity, latest.Score, latest.Summary, latest.Evidence
			a.Labels, a.Fields = latest.Labels, latest.Fields
			if latest.LastSeen.After(a.LastSeen) {
				a.LastSeen = latest.LastSeen
			}
		}
	}

	for fp, a := range next {
		if a.State == Resolved || a.Detector == DegradedDetector {
			continue
		}
		// A successful run that started after the last finding and is not the run that found it
		// did not find it; a failed run says nothing. Findings that are reported rather than
		// scanned for (leak reports, or a detector that never ran) resolve on resolve_after alone.
		det := runs[a.Detector]
		reported := len(det) == 0 || a.Detector == reportDetector
		missed := !reported && det[0].Err == nil && det[0].Started.After(a.LastSeen) && det[0].ID != lastRun[fp]
		switch a.State {
		case Pending:
			if missed {
				a.State, a.ResolvedAt = Resolved, now // never fired: no notification
			} else if now.Sub(a.ActiveSince) >= forOf(cfg, a.Detector) {
				a.State, a.FiredAt = Firing, now
			}
		case Firing:
			if (missed || reported) && now.Sub(a.LastSeen) >= resolveAfterOf(cfg, a.Detector) {
				a.State, a.ResolvedAt = Resolved, now
			}
		}
	}
	degraded(next, runs, max(cfg.DegradedAfter, 1), now)
	return next
}

// alertOf is the alert a finding opens or updates: its identity, severity, score, summary,
// evidence (as stored JSON), labels and fields; LastSeen is when it was detected.
func alertOf(f finding.Finding) Alert {
	a := Alert{
		Fingerprint: f.Fingerprint, Detector: f.Detector, KeyID: f.KeyID, ClientID: f.ClientID, RotationID: f.RotationID,
		Severity: f.Severity, Score: f.Score, Summary: f.Summary, Labels: f.Labels, Fields: f.Fields, LastSeen: f.DetectedAt,
	}
	switch ev := f.Evidence.(type) {
	case nil:
	case json.RawMessage:
		a.Evidence = ev
	default:
		a.Evidence, _ = json.Marshal(ev)
	}
	return a
}

// LabelFailingDetector is the label of a detection_degraded alert that names the detector whose
// runs fail.
const LabelFailingDetector = "failing_detector"

// degradedEvidence is the evidence of a detection_degraded alert.
type degradedEvidence struct {
	Detector    string    `json:"detector"`
	FailedRuns  int       `json:"failed_runs"`
	LastError   string    `json:"last_error"`
	LastFailure time.Time `json:"last_failure"`
}

// degraded raises an alert for each detector whose last n runs all failed, and resolves it once the
// detector's latest run succeeded.
func degraded(next map[string]*stored, runs map[string][]finding.Run, n int, now time.Time) {
	for name, rs := range runs {
		fp := finding.Fingerprint(DegradedDetector, "", "", name)
		a := next[fp]
		failing := len(rs) >= n
		for _, r := range rs[:min(n, len(rs))] {
			failing = failing && r.Err != nil
		}
		switch {
		case failing:
			if a == nil || a.State == Resolved {
				episode := &stored{}
				if a != nil {
					episode.version = a.version
				}
				a = episode
				a.Fingerprint, a.Detector, a.Severity = fp, DegradedDetector, finding.Warning
				a.State, a.ActiveSince, a.FiredAt = Firing, rs[n-1].Started, now
				next[fp] = a
			}
			last := rs[0].Err.Error()
			a.Score = float64(n)
			a.Summary = fmt.Sprintf("detector %s failed its last %d runs: %s", name, n, last)
			a.Evidence, _ = json.Marshal(degradedEvidence{Detector: name, FailedRuns: n, LastError: last, LastFailure: rs[0].Started})
			a.Labels = map[string]string{LabelFailingDetector: name}
			a.Fields = finding.Fields{
				{Name: "Detector", Value: name},
				{Name: "Failed runs", Value: strconv.Itoa(n)},
				{Name: "Last error", Value: last},
				{Name: "Last failure", Value: finding.Stamp(rs[0].Started)},
			}
			a.LastSeen = rs[0].Started
		case a != nil && a.State != Resolved && len(rs) > 0 && rs[0].Err == nil:
			a.State, a.ResolvedAt = Resolved, now
		}
	}
}

// store writes the alerts that changed since before, each with a higher version, then their
// history (changes). A history that cannot be stored is logged and the pass goes on: it is what
// the console shows, and must not stop alerting.
func (e *Evaluator) store(ctx context.Context, before map[string]stored, next map[string]*stored, now time.Time) error {
	var changed []stored
	var history []historyRow
	for _, a := range sortedAlerts(next) {
		b, ok := before[a.Fingerprint]
		if ok && sameAlert(b.Alert, a.Alert) {
			continue
		}
		a.version = max(a.version+1, uint64(now.UnixMilli()))
		next[a.Fingerprint].version = a.version
		changed = append(changed, a)
		history = append(history, changes(b.Alert, a.Alert, now)...)
	}
	if err := writeAlerts(ctx, e.conn, changed, now); err != nil {
		return fmt.Errorf("alerting: store %d alerts: %w", len(changed), err)
	}
	if err := writeHistory(ctx, e.conn, history); err != nil && ctx.Err() == nil {
		e.log.Warn("the alerts' history of this pass is not stored; the alerts are", "changes", len(history), "err", err)
	}
	return nil
}

func sameAlert(a, b Alert) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// sortedAlerts returns copies of the alerts ordered by fingerprint.
func sortedAlerts(m map[string]*stored) []stored {
	out := make([]stored, 0, len(m))
	for _, a := range m {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b stored) int { return compareStrings(a.Fingerprint, b.Fingerprint) })
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
