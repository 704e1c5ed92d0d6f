package alerting

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// TestTimers follows one rotation's group through group_wait, group_interval, repeat_interval
// and its resolution, told once.
func TestTimers(t *testing.T) {
	e := newEnv(t)
	e.cfg.GroupWait = config.Duration(30 * time.Second)
	e.cfg.GroupInterval = config.Duration(5 * time.Minute)
	e.cfg.RepeatInterval = config.Duration(time.Hour)
	e.cfg.ResolveAfter = map[string]config.Duration{"default": config.Duration(time.Hour)}
	a := newFinding("lingering", "kid_old", "acme-billing", "rot-1", finding.Warning)
	b := newFinding("spike", "kid_new", "acme-billing", "rot-1", finding.Critical)
	ev := e.evaluator()
	m := time.Minute
	steps := []struct {
		at   time.Duration
		run  func()
		want []string
	}{
		{0, func() { e.run("lingering", 0, "", a) }, nil}, // group_wait
		{20 * time.Second, nil, nil},
		{30 * time.Second, nil, []string{"#keywatch rotation:rot-1 acme-billing=firing"}},
		{m, func() { e.run("spike", m, "", b) }, nil}, // changed: group_interval
		{5 * m, nil, nil},
		{5*m + 30*time.Second, nil, []string{"#keywatch rotation:rot-1 acme-billing=firing acme-billing=firing"}},
		{10 * m, func() { // new evidence numbers only: nothing to tell
			a.Evidence, b.Evidence, a.Score = map[string]any{"requests": 7}, map[string]any{"failures": 9}, 99
			e.run("lingering", 10*m, "", a)
			e.run("spike", 10*m, "", b)
		}, nil},
		{60 * m, nil, nil},
		{65*m + 30*time.Second, nil, []string{"#keywatch rotation:rot-1 acme-billing=firing acme-billing=firing reminder"}},
		{70 * m, nil, nil},
		{2 * time.Hour, func() { e.run("lingering", 2*time.Hour, ""); e.run("spike", 2*time.Hour, "", b) }, []string{"#keywatch rotation:rot-1 acme-billing=firing acme-billing=resolved"}},
		{2*time.Hour + m, nil, nil},
		{3 * time.Hour, func() { e.run("spike", 3*time.Hour, "") }, []string{"#keywatch rotation:rot-1 acme-billing=resolved acme-billing=resolved resolved"}},
		{3*time.Hour + m, nil, nil},
		{8 * time.Hour, nil, nil},
	}
	for _, s := range steps {
		if s.run != nil {
			s.run()
		}
		e.eval(ev, s.at)
		if got := summary(e.notifier.take()); !slices.Equal(got, s.want) {
			t.Fatalf("at %s: %q, want %q", s.at, got, s.want)
		}
	}
}

// TestRouting sends groups to the channels routes name, and nowhere when nothing matches and
// there is no default channel.
func TestRouting(t *testing.T) {
	routes := config.Slack{DefaultChannel: "#keywatch", Routes: []config.SlackRoute{
		{Channel: "#security", Severity: []string{"critical"}, Detector: []string{"leak*"}},
		{Channel: "#acme", Client: []string{"acme-*"}, Continue: true},
		{Channel: "#rotations", Detector: []string{"lingering", "spike"}},
		{Channel: "#never", Detector: []string{"lingering"}},
	}}
	alert := func(det, client string, sev finding.Severity, state State) Alert {
		return Alert{Detector: det, ClientID: client, Severity: sev, State: state}
	}
	cases := []struct {
		name   string
		client string
		alerts []Alert
		want   []string
	}{
		{"critical leak", "", []Alert{alert("leak", "", finding.Critical, Firing)}, []string{"#security"}},
		{"warning leak: default", "", []Alert{alert("leak", "", finding.Warning, Firing)}, []string{"#keywatch"}},
		{"only the firing severity counts", "", []Alert{alert("leak", "", finding.Warning, Firing), alert("leak", "", finding.Critical, Pending)}, []string{"#keywatch"}},
		{"resolved group: its highest severity", "", []Alert{alert("leak", "", finding.Critical, Resolved)}, []string{"#security"}},
		{"client route continues", "acme-billing", []Alert{alert("lingering", "acme-billing", finding.Info, Firing)}, []string{"#acme", "#rotations"}},
		{"any alert's detector", "", []Alert{alert("hygiene", "", finding.Info, Firing), alert("spike", "", finding.Info, Firing)}, []string{"#rotations"}},
		{"client route alone", "acme-web", []Alert{alert("hygiene", "acme-web", finding.Info, Firing)}, []string{"#acme"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := route(routes, Group{ClientID: c.client, Alerts: c.alerts}); !slices.Equal(got, c.want) {
				t.Fatalf("%q, want %q", got, c.want)
			}
		})
	}

	e := newEnv(t)
	e.slack = config.Slack{Routes: []config.SlackRoute{{Channel: "#security", Detector: []string{"leak"}}}}
	ev := e.evaluator()
	e.run("leak", 0, "", newFinding("leak", "kid_a", "", "", finding.Critical))
	e.run("hygiene", 0, "", newFinding("hygiene", "kid_b", "", "", finding.Info))
	e.eval(ev, time.Minute)
	e.eval(ev, 2*time.Minute)
	if got := summary(e.notifier.take()); !slices.Equal(got, []string{"#security key:kid_a =firing"}) {
		t.Fatalf("notifications %q, want only the leak's", got)
	}
}

// TestFailuresRetry: a Notifier or Actor error is retried next pass and blocks nothing else.
func TestFailuresRetry(t *testing.T) {
	e := newEnv(t)
	e.notifier.fail = errors.New("outbox unavailable")
	e.actor.fail = errors.New("policy store unavailable")
	f := newFinding("leak", "kid_a", "", "", finding.Critical)
	ev := e.evaluator()
	e.run("leak", 0, "", f)
	e.eval(ev, time.Minute)
	if len(e.actor.take()) != 1 {
		t.Fatal("actor not asked")
	}
	e.notifier.fail, e.actor.fail = nil, nil
	e.eval(ev, 2*time.Minute)
	got := e.notifier.take()
	if len(got) != 1 || got[0].Group.Alerts[0].Action == nil {
		t.Fatalf("after recovery: %+v, want one notification with the action", got)
	}
	if a := e.alert(f.Fingerprint); a.Action == nil || a.Action.Status != "dry_run" {
		t.Fatalf("stored alert: %+v, want its action", a)
	}
	e.eval(ev, 3*time.Minute)
	if got := e.notifier.take(); len(got) != 0 {
		t.Fatalf("unchanged: %q", summary(got))
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.cfg.ResolveAfter = map[string]config.Duration{"default": config.Duration(time.Hour)}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	ev := New(e.conn, e.cfg, e.slack, nil, nil, m, nil)
	e.run("leak", 0, "", newFinding("leak", "kid_a", "", "", finding.Critical), newFinding("leak", "kid_b", "", "", finding.Critical))
	e.eval(ev, time.Minute)
	e.run("leak", 2*time.Hour, "", newFinding("leak", "kid_a", "", "", finding.Critical))
	e.eval(ev, 2*time.Hour+time.Minute)
	if got := gather(t, reg, "keywatch_alerts"); !slices.Equal(got, []string{"detector=leak,state=firing 1", "detector=leak,state=resolved 1"}) {
		t.Fatalf("keywatch_alerts %q", got)
	}
	if got := gather(t, reg, "keywatch_alerting_evaluations_total"); !slices.Equal(got, []string{"result=ok 2"}) {
		t.Fatalf("evaluations %q", got)
	}
	e.eval(ev, 27*time.Hour)
	if got := gather(t, reg, "keywatch_alerts"); !slices.Equal(got, []string{"detector=leak,state=firing 1"}) {
		t.Fatalf("a day later: keywatch_alerts %q, want only the firing one", got)
	}
}

// gather returns the series of a gauge or counter as "label=value,... number".
func gather(t *testing.T, reg *prometheus.Registry, name string) []string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out = append(out, fmt.Sprintf("%s %g", strings.Join(labels, ","), v))
		}
	}
	slices.Sort(out)
	return out
}
