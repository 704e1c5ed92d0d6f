package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/internal/backoff"
	"github.com/keywatch/keywatch/internal/config"
)

// alertsPath is Alertmanager's endpoint for alerts, under each configured base URL.
const alertsPath = "/api/v2/alerts"

// maxAnswer bounds what is read of an Alertmanager's answer: its error message, if any.
const maxAnswer = 4 << 10

// retry spaces the posts to an Alertmanager that failed: evaluations go on meanwhile, and the
// retry posts the latest of them.
var retry = backoff.Policy{Initial: time.Second, Max: time.Minute, Jitter: backoff.Equal}

// Forwarder posts the alerts of every evaluation to each configured Alertmanager. It is an
// alerting.Observer: Observe builds the snapshot and leaves it for each URL's sender without
// waiting; Run runs the senders, one per URL, each posting the latest snapshot it was left, so an
// Alertmanager that is down or slow delays no other one and holds no more than one snapshot.
type Forwarder struct {
	targets []*target
	resend  time.Duration // an open alert's endsAt after the post
	links   links
	client  *http.Client
	user    string // basic authentication, when set
	pass    string
	retry   backoff.Policy
	metrics *Metrics
	log     *slog.Logger
}

// target is one Alertmanager and the latest snapshot left for it.
type target struct {
	url      string // as configured: the metrics' and logs' name of it
	endpoint string
	wake     chan struct{} // holds a token when latest is new

	mu     sync.Mutex
	latest *snapshot // nil: nothing new since the last post
}

// snapshot is one evaluation's alerts as posted.
type snapshot struct {
	body   []byte
	alerts int
}

// New returns a Forwarder to the Alertmanagers of cfg, for an evaluator running every
// alerting.evaluate_interval, linking the runbook and dashboards of slack. metrics may be nil.
func New(cfg config.Alertmanager, evaluateInterval time.Duration, slack config.Slack, metrics *Metrics, log *slog.Logger) *Forwarder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		resend: resendWindow(evaluateInterval),
		links:  links{Runbook: slack.RunbookURL, Grafana: slack.GrafanaURL},
		client: &http.Client{
			Timeout:       time.Duration(cfg.Timeout),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		user: cfg.Username, pass: cfg.Password, retry: retry, metrics: metrics, log: log.With("component", "alertmanager"),
	}
	for _, u := range cfg.URLs {
		f.targets = append(f.targets, &target{
			url: u, endpoint: strings.TrimSuffix(u, "/") + alertsPath, wake: make(chan struct{}, 1),
		})
	}
	return f
}

// Observe leaves the alerts of the pass at now for every Alertmanager, replacing what an earlier
// pass left that was not posted yet. It never waits.
func (f *Forwarder) Observe(_ context.Context, alerts []alerting.Alert, now time.Time) {
	if len(f.targets) == 0 {
		return
	}
	posted := alertsToPost(alerts, now, f.resend, f.links)
	body, err := json.Marshal(posted)
	if err != nil {
		f.log.Error("encoding alerts for Alertmanager failed", "alerts", len(posted), "err", err)
		return
	}
	for _, t := range f.targets {
		t.leave(&snapshot{body: body, alerts: len(posted)})
	}
}

// Run posts to every Alertmanager until ctx ends.
func (f *Forwarder) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, t := range f.targets {
		wg.Go(func() { f.send(ctx, t) })
	}
	wg.Wait()
	return nil
}

// send posts the latest snapshot left for t each time there is a new one. A failed post is retried
// after a backoff, with the latest snapshot by then: a newer pass replaces the one that failed.
func (f *Forwarder) send(ctx context.Context, t *target) {
	waits := f.retry.Waits()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		}
		p := t.take()
		if p == nil {
			continue
		}
		err := f.post(ctx, t, p)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if failures > 0 {
				f.log.Info("Alertmanager reachable again", "url", t.url, "failed_posts", failures)
			}
			failures = 0
			waits.Reset()
			continue
		}
		failures++
		if failures == 1 {
			f.log.Warn("posting alerts to Alertmanager failed; retrying with backoff", "url", t.url, "err", err)
		} else {
			f.log.Debug("posting alerts to Alertmanager failed again", "url", t.url, "failed_posts", failures, "err", err)
		}
		t.retry(p)
		if !backoff.Sleep(ctx, waits.Next()) {
			return
		}
	}
}

// post sends one snapshot to t.
func (f *Forwarder) post(ctx context.Context, t *target, p *snapshot) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, bytes.NewReader(p.body))
	if err != nil {
		return fmt.Errorf("post %d alerts to %s: %w", p.alerts, t.endpoint, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keywatch")
	if f.user != "" {
		req.SetBasicAuth(f.user, f.pass)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.metrics.post(t.url, "error")
		return fmt.Errorf("post %d alerts to %s: %w", p.alerts, t.endpoint, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode/100 != 2 {
		f.metrics.post(t.url, "rejected")
		return fmt.Errorf("post %d alerts to %s: %s: %q", p.alerts, t.endpoint, resp.Status, bytes.TrimSpace(answer))
	}
	f.metrics.post(t.url, "ok")
	f.metrics.succeeded(t.url, p.alerts, float64(time.Now().UnixNano())/1e9)
	return nil
}

// leave makes p the snapshot t posts next.
func (t *target) leave(p *snapshot) {
	t.mu.Lock()
	t.latest = p
	t.mu.Unlock()
	t.kick()
}

// take returns the snapshot left for t, or nil when there is none.
func (t *target) take() *snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.latest
	t.latest = nil
	return p
}

// retry leaves p again after its post failed, unless a newer snapshot was left meanwhile.
func (t *target) retry(p *snapshot) {
	t.mu.Lock()
	if t.latest == nil {
		t.latest = p
	}
	t.mu.Unlock()
	t.kick()
}

// kick wakes t's sender, unless a token is already there.
func (t *target) kick() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}
