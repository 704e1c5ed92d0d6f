package alertmanager

import (
	"strings"
	"time"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
)

// resolvedFor is how long a resolved alert is still posted (with endsAt its resolution time), as
// Prometheus does: Alertmanager that missed the resolution still learns of it.
const resolvedFor = 15 * time.Minute

// resendFactor times the evaluation interval (at least a minute) is how far ahead of each post an
// open alert's endsAt lies: Prometheus' 4 × max(evaluation interval, resend delay).
const resendFactor = 4

// resendWindow is how far ahead of a post an open alert's endsAt is set, for an evaluation interval.
func resendWindow(evaluateInterval time.Duration) time.Duration {
	return resendFactor * max(evaluateInterval, time.Minute)
}

// postableAlert is one element of the body of POST /api/v2/alerts (Alertmanager's postableAlert).
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// links are the URLs every alert's annotations point at: the runbook (slack.runbook_url) and the
// Grafana dashboards (slack.grafana_url), each empty when not configured.
type links struct {
	Runbook, Grafana string
}

// The labels of a posted alert, beside the finding's identity labels (finding.LabelSeverity, ...).
const (
	labelAlertname  = "alertname"
	alertnamePrefix = "keywatch_"
)

// alertsToPost is what is posted after a pass at now: the firing alerts that are not muted, with
// endsAt resend after now, and those resolved within resolvedFor before now, with endsAt their
// resolution time, in the order given. Pending alerts, muted ones and alerts resolved without
// ever firing are left out.
func alertsToPost(alerts []alerting.Alert, now time.Time, resend time.Duration, l links) []postableAlert {
	out := []postableAlert{}
	for _, a := range alerts {
		if a.Silenced != "" || a.Inhibited != "" || a.FiredAt.IsZero() {
			continue
		}
		end := now.Add(resend)
		switch a.State {
		case alerting.Firing:
		case alerting.Resolved:
			if now.Sub(a.ResolvedAt) > resolvedFor {
				continue
			}
			end = a.ResolvedAt
		default:
			continue
		}
		out = append(out, postableOf(a, end, l))
	}
	return out
}

// postable is the alert as Alertmanager takes it, ending at end.
func postableOf(a alerting.Alert, end time.Time, l links) postableAlert {
	labels := map[string]string{labelAlertname: alertnamePrefix + a.Detector, finding.LabelSeverity: a.Severity.String()}
	for name, v := range map[string]string{finding.LabelKeyID: a.KeyID, finding.LabelClientID: a.ClientID, finding.LabelRotationID: a.RotationID} {
		if v != "" {
			labels[name] = v
		}
	}
	// A detection_degraded alert is one per failing detector: its label is part of its identity.
	if v := a.Labels[alerting.LabelFailingDetector]; v != "" && a.Detector == alerting.DegradedDetector {
		labels[alerting.LabelFailingDetector] = v
	}
	dashboard := alerting.DashboardLink(l.Grafana, a)
	annotations := map[string]string{}
	for name, v := range map[string]string{
		"summary": a.Summary, "description": description(a), "runbook_url": l.Runbook, "dashboard_url": dashboard,
	} {
		if v != "" {
			annotations[name] = v
		}
	}
	return postableAlert{Labels: labels, Annotations: annotations, StartsAt: a.FiredAt, EndsAt: end, GeneratorURL: dashboard}
}

// description is the alert's display fields, one "Name: value" line each.
func description(a alerting.Alert) string {
	var b strings.Builder
	for _, f := range a.Fields {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(f.Name + ": " + f.Value)
	}
	return b.String()
}
