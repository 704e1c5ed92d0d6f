package alerting

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// TestAlertsKeepLabelsAndFields: an alert stores its latest finding's labels and display fields and
// reads them back; the notification carries them.
func TestAlertsKeepLabelsAndFields(t *testing.T) {
	e := newEnv(t)
	e.cfg.For = map[string]config.Duration{"default": 0}
	f := newFinding("spike", "kid_old", "acme", "kid_old>kid_new", finding.Critical)
	f.Labels = map[string]string{finding.LabelStep: "revoked"}
	f.Fields.Add("Rotation", "kid_old → kid_new, revoked")
	f.Fields.Add("Failures by outcome", "revoked_key 40")
	e.run("spike", 0, "", f)
	ev := e.evaluator()
	e.eval(ev, time.Minute)
	a := e.alert(f.Fingerprint)
	if a.State != Firing || !reflect.DeepEqual(a.Labels, f.Labels) || !reflect.DeepEqual(a.Fields, f.Fields) {
		t.Fatalf("stored alert %s with labels %v and fields %v, want firing with %v and %v", a.State, a.Labels, a.Fields, f.Labels, f.Fields)
	}
	ns := e.notifier.take()
	if len(ns) != 1 || !reflect.DeepEqual(ns[0].Group.Alerts[0].Fields, f.Fields) || ns[0].Group.Alerts[0].Labels[finding.LabelStep] != "revoked" {
		t.Fatalf("notifications %+v, want one carrying the labels and fields", ns)
	}

	// The latest finding's replace them.
	g := f
	g.Labels, g.Fields = map[string]string{finding.LabelStep: "retired"}, nil
	g.Fields.Add("Rotation", "kid_old → kid_new, retired")
	e.run("spike", 10*time.Minute, "", g)
	e.eval(ev, 11*time.Minute)
	if a := e.alert(f.Fingerprint); a.Labels[finding.LabelStep] != "retired" || !reflect.DeepEqual(a.Fields, g.Fields) {
		t.Fatalf("labels %v, fields %v, want the latest finding's", a.Labels, a.Fields)
	}

	// A finding without labels or fields gives an alert without them.
	h := newFinding("hygiene", "kid_h", "", "", finding.Info)
	e.run("hygiene", 20*time.Minute, "", h)
	e.eval(ev, 21*time.Minute)
	if a := e.alert(h.Fingerprint); a.State != Firing || a.Labels != nil || a.Fields != nil || len(a.Evidence) == 0 {
		t.Fatalf("%+v: want firing with evidence and no labels or fields", a)
	}
}

// TestDegradedAlertStored: a detection_degraded alert is stored with its fields and label and
// grouped by the failing detector.
func TestDegradedAlertStored(t *testing.T) {
	e := newEnv(t)
	e.cfg.DegradedAfter = 2
	e.run("leak", 0, "timeout")
	e.run("leak", 10*time.Minute, "timeout again")
	e.eval(e.evaluator(), 11*time.Minute)
	a := e.alert(finding.Fingerprint(DegradedDetector, "", "", "leak"))
	want := finding.Fields{{Name: "Detector", Value: "leak"}, {Name: "Failed runs", Value: "2"}, {Name: "Last error", Value: "timeout again"},
		{Name: "Last failure", Value: "2026-11-20 12:10 UTC"}}
	if a.State != Firing || !reflect.DeepEqual(a.Fields, want) || a.Labels[LabelFailingDetector] != "leak" || GroupKey(a) != "detector:leak" {
		t.Fatalf("%s alert with fields %v, labels %v, group %s", a.State, a.Fields, a.Labels, GroupKey(a))
	}
}

// TestReader: what other packages read of the alerts.
func TestReader(t *testing.T) {
	e := newEnv(t)
	e.cfg.For = map[string]config.Duration{"default": 0}
	leak := newFinding("leak_report", "kid_live", "acme", "", finding.Critical)
	spike := newFinding("spike", "kid_live", "acme", "r1", finding.Warning)
	e.run("leak_report", 0, "", leak)
	e.run("spike", 0, "", spike)
	e.eval(e.evaluator(), time.Minute)
	r := NewReader(e.conn)
	ctx := context.Background()

	a, ok, err := r.OpenOfKey(ctx, "kid_live", "leak")
	if err != nil || !ok || a.Detector != "leak_report" || a.State != Firing || a.Summary != leak.Summary || a.Severity != finding.Critical {
		t.Fatalf("OpenOfKey: %+v %v %v", a, ok, err)
	}
	if _, ok, err := r.OpenOfKey(ctx, "kid_other", "leak"); ok || err != nil {
		t.Fatalf("OpenOfKey of a key without alerts: %v %v", ok, err)
	}
	st, ok, err := r.EpisodeState(ctx, a.ID())
	if err != nil || !ok || st != Firing {
		t.Fatalf("EpisodeState(%s): %s %v %v", a.ID(), st, ok, err)
	}
	for _, id := range []string{"nonsense", a.Fingerprint + "-20000101T000000.000Z"} {
		if _, ok, err := r.EpisodeState(ctx, id); ok || err != nil {
			t.Fatalf("EpisodeState(%s): %v %v, want none", id, ok, err)
		}
	}
	all, err := r.Current(ctx)
	if err != nil || len(all) != 2 || all[0].Detector != "leak_report" || all[1].Detector != "spike" || all[1].State != Firing {
		t.Fatalf("Current: %+v %v", all, err)
	}
}
