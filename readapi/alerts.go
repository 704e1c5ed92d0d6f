package readapi

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/api"
)

// Alerts is the answer of GET /v1/alerts.
type Alerts struct {
	Alerts     []Alert `json:"alerts"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// Alert is a stored alert without its evidence, display fields and action.
type Alert struct {
	// ID is the episode's id (alerting.Alert.ID), once it fired.
	ID          string            `json:"id,omitempty"`
	Fingerprint string            `json:"fingerprint"`
	Detector    string            `json:"detector"`
	KeyID       string            `json:"key_id"`
	ClientID    string            `json:"client_id,omitempty"`
	RotationID  string            `json:"rotation_id,omitempty"`
	Severity    string            `json:"severity"`
	Score       float64           `json:"score"`
	Summary     string            `json:"summary"`
	State       string            `json:"state"`
	Labels      map[string]string `json:"labels,omitempty"`
	ActiveSince time.Time         `json:"active_since"`
	FiredAt     *time.Time        `json:"fired_at,omitempty"`
	ResolvedAt  *time.Time        `json:"resolved_at,omitempty"`
	LastSeen    time.Time         `json:"last_seen"`
	Silenced    string            `json:"silenced,omitempty"`
	Inhibited   string            `json:"inhibited,omitempty"`
}

// detectorName is what a detector's name looks like (lingering, leak_report, detection_degraded).
var detectorName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// Alerts serves GET /v1/alerts: the stored alerts in the order of their fingerprints, which does
// not change as they do (so paging loses and repeats none), filtered by state (one or several,
// comma-separated), detector and key_id.
func (a *API) Alerts(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.RawQuery, "state", "detector", "key_id", "limit", "cursor")
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	q, err := alertQuery(p)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := q.Limit
	q.Limit++
	alerts, err := a.alerts.List(r.Context(), q)
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	out := Alerts{Alerts: make([]Alert, 0, min(len(alerts), limit))}
	if len(alerts) > limit {
		alerts = alerts[:limit]
		out.NextCursor = encodeCursor(alerts[limit-1].Fingerprint)
	}
	for _, al := range alerts {
		v := Alert{Fingerprint: al.Fingerprint, Detector: al.Detector, KeyID: al.KeyID, ClientID: al.ClientID, RotationID: al.RotationID,
			Severity: al.Severity.String(), Score: al.Score, Summary: al.Summary, State: string(al.State), Labels: al.Labels,
			ActiveSince: al.ActiveSince, FiredAt: ptime(al.FiredAt), ResolvedAt: ptime(al.ResolvedAt), LastSeen: al.LastSeen,
			Silenced: al.Silenced, Inhibited: al.Inhibited}
		if !al.FiredAt.IsZero() {
			v.ID = al.ID()
		}
		out.Alerts = append(out.Alerts, v)
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// alertQuery checks the filters and the page of a request for alerts.
func alertQuery(p params) (alerting.Query, error) {
	var q alerting.Query
	if s := p.get("state"); s != "" {
		for _, st := range strings.Split(s, ",") {
			switch state := alerting.State(strings.TrimSpace(st)); state {
			case alerting.Pending, alerting.Firing, alerting.Resolved:
				q.States = append(q.States, state)
			default:
				return q, fmt.Errorf("state %q: want pending, firing or resolved (several comma-separated)", cut(st))
			}
		}
	}
	if d := p.get("detector"); d != "" && !detectorName.MatchString(d) {
		return q, fmt.Errorf("detector %q: not a detector name (lowercase letters, digits and _)", cut(d))
	}
	q.Detector = p.get("detector")
	q.KeyID = p.get("key_id")
	if err := ingest.ValidateID("key_id", q.KeyID); err != nil {
		return q, err
	}
	var err error
	q.Limit, q.After, err = p.page()
	return q, err
}
