package alertmanager

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

// keywatch is the real evaluator over a test database of its own, its findings stored by the
// test, with a Forwarder to the given Alertmanagers as its observer. Evaluations run on the wall
// clock: Alertmanager judges endsAt by it.
type keywatch struct {
	t         *testing.T
	store     *finding.Store
	evaluator *alerting.Evaluator
	forwarder *Forwarder
	metrics   *Metrics
	runs      int
	last      time.Time // the latest run's start
}

var testLinks = config.Slack{GrafanaURL: "https://grafana.example.com/d/keywatch", RunbookURL: "https://wiki.example.com/keywatch"}

func newKeywatch(t *testing.T, urls ...string) *keywatch {
	t.Helper()
	return newKeywatchWith(t, config.Alertmanager{URLs: urls})
}

// newKeywatchWith is newKeywatch with the alertmanager settings am (timeout: 5s).
func newKeywatchWith(t *testing.T, am config.Alertmanager) *keywatch {
	t.Helper()
	_, conn := schematest.NewDatabase(t, ch)
	cfg := config.Default().Alerting
	cfg.For = map[string]config.Duration{"default": 0}
	cfg.ResolveAfter = map[string]config.Duration{"default": 0}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("KEYWATCH_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	metrics := NewMetrics(prometheus.NewRegistry())
	am.Timeout = config.Duration(5 * time.Second)
	fwd := New(am, time.Duration(cfg.EvaluateInterval), testLinks, metrics, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = fwd.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &keywatch{
		t: t, store: finding.NewStore(conn), forwarder: fwd, metrics: metrics,
		evaluator: alerting.New(conn, cfg, config.Slack{}, nil, nil, nil, log).WithObservers(fwd),
	}
}

// leaked is the finding the tests raise: a critical leak of kid_live_1 by acme in rotation rot-7.
func leaked() finding.Finding {
	f := finding.New("leak", time.Time{}, "kid_live_1", "acme", "rot-7")
	f.Severity, f.Score, f.Summary = finding.Critical, 120, "kid_live_1 used from a new network"
	f.Fields = finding.Fields{{Name: "Network", Value: "AS64500"}, {Name: "Country", Value: "NL"}}
	return f
}

// run stores a successful run of the leak detector now that finds fs.
func (k *keywatch) run(fs ...finding.Finding) {
	k.t.Helper()
	k.runs++
	start := later(time.Now().UTC().Truncate(time.Millisecond), k.last)
	k.last = start
	r := finding.Run{ID: fmt.Sprintf("run-%d", k.runs), Detector: "leak", Started: start, Finished: start}
	for _, f := range fs {
		f.DetectedAt = start
		r.Findings = append(r.Findings, f)
	}
	if err := k.store.StoreRun(context.Background(), r); err != nil {
		k.t.Fatal(err)
	}
}

// evaluate runs one evaluation pass now.
func (k *keywatch) evaluate() {
	k.t.Helper()
	if err := k.evaluator.Evaluate(context.Background(), later(time.Now(), k.last)); err != nil {
		k.t.Fatal(err)
	}
}

// later is t, or a millisecond after last if t is not after it: runs and passes are ordered.
func later(t, last time.Time) time.Time {
	if t.After(last) {
		return t
	}
	return last.Add(time.Millisecond)
}

// wantLeakLabels are the labels of leaked()'s alert in Alertmanager.
var wantLeakLabels = map[string]string{
	"alertname": "keywatch_leak", "severity": "critical", "key_id": "kid_live_1", "client_id": "acme", "rotation_id": "rot-7",
}

// firingIn waits until am holds the leak alert as active, and returns it.
func firingIn(t *testing.T, am *server) amAlert {
	t.Helper()
	var found amAlert
	waitFor(t, "the firing alert in "+am.URL, func() (bool, string) {
		alerts, err := am.alerts()
		if err != nil {
			return false, err.Error()
		}
		for _, a := range alerts {
			if maps.Equal(a.Labels, wantLeakLabels) && a.Status.State == "active" {
				found = a
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", alerts)
	})
	return found
}

// The acceptance line: a firing alert appears in Alertmanager with keywatch's labels and reaches
// the receiver once; when keywatch resolves it, Alertmanager resolves it and the receiver is told.
func TestAlertmanagerGetsFiringAlertOnceAndItsResolution(t *testing.T) {
	hook := newReceiver(t)
	am := startAlertmanager(t, hook.srv.URL)
	k := newKeywatch(t, am.URL)

	k.run(leaked())
	k.evaluate()
	got := firingIn(t, am)
	for name, want := range map[string]string{
		"summary": "kid_live_1 used from a new network", "description": "Network: AS64500\nCountry: NL",
		"runbook_url": testLinks.RunbookURL,
	} {
		if got.Annotations[name] != want {
			t.Errorf("annotation %s = %q, want %q", name, got.Annotations[name], want)
		}
	}
	if got.GeneratorURL == "" || got.Annotations["dashboard_url"] != got.GeneratorURL {
		t.Errorf("generatorURL %q and dashboard_url %q: want the same dashboard link", got.GeneratorURL, got.Annotations["dashboard_url"])
	}
	waitFor(t, "the firing notification", func() (bool, string) {
		return hook.count("firing") >= 1, fmt.Sprintf("%+v", hook.all())
	})

	// Every evaluation posts the alert again; Alertmanager's group flushes every second. Once its
	// notification log was consulted a few more times after the re-posts (each flush of a group with
	// alerts consults it), a duplicate would have been sent.
	for range 3 {
		k.run(leaked())
		k.evaluate()
	}
	waitFor(t, "the re-posts to reach Alertmanager", func() (bool, string) {
		n := testutil.ToFloat64(k.metrics.posts.WithLabelValues(am.URL, "ok"))
		return n >= 4, fmt.Sprintf("%v successful posts", n)
	})
	queries, err := am.metric("alertmanager_nflog_queries_total")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three more flushes of the group", func() (bool, string) {
		n, err := am.metric("alertmanager_nflog_queries_total")
		if err != nil {
			return false, err.Error()
		}
		return n >= queries+3, fmt.Sprintf("%v notification log queries, from %v", n, queries)
	})
	if n := hook.count("firing"); n != 1 {
		t.Fatalf("the receiver got %d firing notifications, want exactly 1: %+v", n, hook.all())
	}

	// A successful run that does not find it resolves the alert (resolve_after 0s here).
	k.run()
	k.evaluate()
	waitFor(t, "the alert to leave Alertmanager's active alerts", func() (bool, string) {
		alerts, err := am.alerts()
		if err != nil {
			return false, err.Error()
		}
		for _, a := range alerts {
			if maps.Equal(a.Labels, wantLeakLabels) && a.EndsAt.After(time.Now()) {
				return false, fmt.Sprintf("still open: %+v", a)
			}
		}
		return true, ""
	})
	waitFor(t, "the resolved notification", func() (bool, string) {
		return hook.count("resolved") == 1, fmt.Sprintf("%+v", hook.all())
	})
	if n := hook.count("firing"); n != 1 {
		t.Errorf("the receiver got %d firing notifications, want 1", n)
	}
}

// An Alertmanager that restarts with nothing stored gets every alert keywatch still holds open
// with the next evaluation.
func TestRestartedAlertmanagerGetsOpenAlertsAgain(t *testing.T) {
	hook := newReceiver(t)
	am := startAlertmanager(t, hook.srv.URL)
	k := newKeywatch(t, am.URL)
	k.run(leaked())
	k.evaluate()
	firingIn(t, am)

	am.restart() // SIGKILL, then fresh storage
	if alerts, err := am.alerts(); err != nil || len(alerts) != 0 {
		t.Fatalf("the restarted Alertmanager holds %+v (%v), want nothing yet", alerts, err)
	}
	k.run(leaked())
	k.evaluate()
	firingIn(t, am)
}

// Each Alertmanager of an HA pair gets every alert, while a third one refuses connections and a
// fourth never answers: the failures are counted and retried, and no evaluation waits on them.
func TestEveryAlertmanagerGetsEveryAlertWhateverTheOthersDo(t *testing.T) {
	hook := newReceiver(t)
	am1, am2 := startAlertmanager(t, hook.srv.URL), startAlertmanager(t, hook.srv.URL)
	refused := "http://" + freeAddr(t)
	arrived, release := make(chan struct{}, 100), make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	t.Cleanup(hung.Close)
	t.Cleanup(func() { close(release) })

	k := newKeywatch(t, am1.URL, refused, hung.URL, am2.URL)
	k.evaluate() // nothing open: an empty list is posted
	waitFor(t, "the empty post", func() (bool, string) {
		n := testutil.ToFloat64(k.metrics.posts.WithLabelValues(am1.URL, "ok"))
		return n >= 1, fmt.Sprintf("%v successful posts", n)
	})
	<-arrived // the first post hangs; the next evaluations go on regardless
	k.run(leaked())
	k.evaluate()
	for range 2 {
		k.run(leaked())
		k.evaluate()
	}
	firingIn(t, am1)
	firingIn(t, am2)
	waitFor(t, "the refused posts to be counted", func() (bool, string) {
		n := testutil.ToFloat64(k.metrics.posts.WithLabelValues(refused, "error"))
		return n >= 2, fmt.Sprintf("%v failed posts", n) // the first and a retry
	})
	if n := testutil.ToFloat64(k.metrics.posted.WithLabelValues(am2.URL)); n != 1 {
		t.Errorf("keywatch_alertmanager_alerts_posted{url=%q} = %v, want 1", am2.URL, n)
	}
	if n := testutil.ToFloat64(k.metrics.lastSuccess.WithLabelValues(am1.URL)); n == 0 {
		t.Errorf("keywatch_alertmanager_last_success_timestamp_seconds{url=%q} is not set", am1.URL)
	}
}

// With alertmanager.username and password, posts pass an Alertmanager that requires basic
// authentication; without them it refuses them, and the refusals are counted.
func TestBasicAuthentication(t *testing.T) {
	hook := newReceiver(t)
	am := startWith(t, fmt.Sprintf(amConfig, hook.srv.URL), []string{"keywatch", testPassword})

	anonymous := newKeywatch(t, am.URL)
	anonymous.run(leaked())
	anonymous.evaluate()
	waitFor(t, "the unauthenticated post to be refused", func() (bool, string) {
		n := testutil.ToFloat64(anonymous.metrics.posts.WithLabelValues(am.URL, "rejected"))
		return n >= 1, fmt.Sprintf("%v rejected posts", n)
	})

	k := newKeywatchWith(t, config.Alertmanager{URLs: []string{am.URL}, Username: "keywatch", Password: testPassword})
	k.run(leaked())
	k.evaluate()
	firingIn(t, am)
}

// The example route of docs/alertmanager.md is a configuration the real Alertmanager loads.
func TestDocumentedRouteLoads(t *testing.T) {
	doc, err := os.ReadFile("../docs/alertmanager.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(doc), "## An Alertmanager route for keywatch\n\n```yaml\n")
	yml, _, found := strings.Cut(after, "```")
	if !found {
		t.Fatal("docs/alertmanager.md has no yaml block under \"An Alertmanager route for keywatch\"")
	}
	secrets := t.TempDir()
	for _, name := range []string{"slack-webhook-url", "pagerduty-key"} {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte("https://hooks.example.com/x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	startWithConfig(t, strings.ReplaceAll(yml, "/etc/alertmanager/", secrets+"/")) // fails unless ready
}
