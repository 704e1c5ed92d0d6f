package alertmanager

import (
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
)

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

var exampleLinks = links{Runbook: "https://wiki.example.com/keywatch", Grafana: "https://grafana.example.com/d/keywatch?orgId=1"}

func firing() alerting.Alert {
	return alerting.Alert{
		Fingerprint: "fp1", Detector: "lingering", KeyID: "kid_old", ClientID: "acme", RotationID: "rot-1",
		Severity: finding.Critical, Summary: "acme still uses kid_old",
		Fields: finding.Fields{{Name: "Client", Value: "acme"}, {Name: "Requests (1h)", Value: "1,204"}},
		State:  alerting.Firing, ActiveSince: now.Add(-time.Hour), FiredAt: now.Add(-50 * time.Minute), LastSeen: now.Add(-time.Minute),
	}
}

func TestPayloadOfAFiringAlert(t *testing.T) {
	got := alertsToPost([]alerting.Alert{firing()}, now, resendWindow(30*time.Second), exampleLinks)
	if len(got) != 1 {
		t.Fatalf("%d alerts posted, want 1", len(got))
	}
	p := got[0]
	wantLabels := map[string]string{
		"alertname": "keywatch_lingering", "severity": "critical", "key_id": "kid_old", "client_id": "acme", "rotation_id": "rot-1",
	}
	if !maps.Equal(p.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", p.Labels, wantLabels)
	}
	dashboard := "https://grafana.example.com/d/keywatch?from=" + itoa(now.Add(-2*time.Hour).UnixMilli()) + "&orgId=1&to=now&var-client=acme&var-key=kid_old"
	wantAnnotations := map[string]string{
		"summary": "acme still uses kid_old", "description": "Client: acme\nRequests (1h): 1,204",
		"runbook_url": exampleLinks.Runbook, "dashboard_url": dashboard,
	}
	if !maps.Equal(p.Annotations, wantAnnotations) {
		t.Errorf("annotations %v, want %v", p.Annotations, wantAnnotations)
	}
	if p.GeneratorURL != dashboard {
		t.Errorf("generatorURL %q, want the dashboard link %q", p.GeneratorURL, dashboard)
	}
	// endsAt: 4 × max(evaluate_interval, 1m) ahead while open, as Prometheus does.
	if !p.StartsAt.Equal(now.Add(-50*time.Minute)) || !p.EndsAt.Equal(now.Add(4*time.Minute)) {
		t.Errorf("startsAt %v endsAt %v, want the firing time and now+4m", p.StartsAt, p.EndsAt)
	}
}

func TestResendWindowIsFourEvaluationsOfAtLeastAMinute(t *testing.T) {
	for interval, want := range map[time.Duration]time.Duration{
		0: 4 * time.Minute, 10 * time.Second: 4 * time.Minute, time.Minute: 4 * time.Minute, 5 * time.Minute: 20 * time.Minute,
	} {
		if got := resendWindow(interval); got != want {
			t.Errorf("resendWindow(%v) = %v, want %v", interval, got, want)
		}
	}
}

func TestPayloadLeavesOutWhatAlertmanagerMustNotNotify(t *testing.T) {
	pending := firing()
	pending.Fingerprint, pending.State, pending.FiredAt = "pending", alerting.Pending, time.Time{}
	silenced := firing()
	silenced.Fingerprint, silenced.Silenced = "silenced", "sil-1"
	inhibited := firing()
	inhibited.Fingerprint, inhibited.Inhibited = "inhibited", "fp-source"
	neverFired := pending
	neverFired.Fingerprint, neverFired.State, neverFired.ResolvedAt = "never-fired", alerting.Resolved, now.Add(-time.Minute)
	long := firing()
	long.Fingerprint, long.State, long.ResolvedAt = "resolved-long-ago", alerting.Resolved, now.Add(-resolvedFor-time.Second)
	recent := firing()
	recent.Fingerprint, recent.State, recent.ResolvedAt = "resolved-recently", alerting.Resolved, now.Add(-resolvedFor)

	got := alertsToPost([]alerting.Alert{pending, silenced, inhibited, neverFired, long, recent}, now, time.Minute, exampleLinks)
	if len(got) != 1 {
		t.Fatalf("%d alerts posted, want only the one resolved within %v: %+v", len(got), resolvedFor, got)
	}
	// A resolved alert ends at its resolution, and its dashboard link ends an hour after it.
	if !got[0].EndsAt.Equal(recent.ResolvedAt) || !got[0].StartsAt.Equal(recent.FiredAt) {
		t.Errorf("resolved alert starts %v ends %v, want %v to %v", got[0].StartsAt, got[0].EndsAt, recent.FiredAt, recent.ResolvedAt)
	}
	if !strings.Contains(got[0].GeneratorURL, "to="+itoa(recent.ResolvedAt.Add(time.Hour).UnixMilli())) {
		t.Errorf("resolved alert's link %q does not end an hour after it resolved", got[0].GeneratorURL)
	}
}

func TestPayloadOmitsEmptyLabelsAndAnnotations(t *testing.T) {
	a := firing()
	a.ClientID, a.RotationID, a.Fields = "", "", nil
	got := alertsToPost([]alerting.Alert{a}, now, time.Minute, links{})
	want := map[string]string{"alertname": "keywatch_lingering", "severity": "critical", "key_id": "kid_old"}
	if !maps.Equal(got[0].Labels, want) {
		t.Errorf("labels %v, want %v", got[0].Labels, want)
	}
	if want := map[string]string{"summary": a.Summary}; !maps.Equal(got[0].Annotations, want) {
		t.Errorf("annotations %v, want %v", got[0].Annotations, want)
	}
	b, err := json.Marshal(got[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "generatorURL") {
		t.Errorf("without slack.grafana_url the alert has no generatorURL: %s", b)
	}
	for _, field := range []string{`"labels":`, `"annotations":`, `"startsAt":"2026-12-06T11:10:00Z"`, `"endsAt":"2026-12-06T12:01:00Z"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("posted JSON %s lacks %s", b, field)
		}
	}
}

// A detection_degraded alert exists once per failing detector: the detector is in its labels, or
// two of them would be one alert in Alertmanager.
func TestDegradedAlertsAreOnePerFailingDetector(t *testing.T) {
	var alerts []alerting.Alert
	for _, det := range []string{"spike", "leak"} {
		alerts = append(alerts, alerting.Alert{
			Fingerprint: finding.Fingerprint(alerting.DegradedDetector, "", "", det), Detector: alerting.DegradedDetector,
			Severity: finding.Warning, Labels: map[string]string{alerting.LabelFailingDetector: det},
			State: alerting.Firing, FiredAt: now,
		})
	}
	got := alertsToPost(alerts, now, time.Minute, links{})
	if len(got) != 2 || maps.Equal(got[0].Labels, got[1].Labels) || got[1].Labels["failing_detector"] != "leak" {
		t.Errorf("degraded alerts posted as %+v, want one per failing detector", got)
	}
	if got[0].Labels["alertname"] != "keywatch_detection_degraded" {
		t.Errorf("alertname %q", got[0].Labels["alertname"])
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
