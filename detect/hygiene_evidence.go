package detect

import (
	"fmt"
	"strings"
	"time"

	"github.com/keywatch/keywatch/finding"
)

// HygieneEvidence is what a hygiene finding shows about its key.
type HygieneEvidence struct {
	Kind      string    `json:"kind"` // policy_age, unused, expiring or standing_forbidden
	KeyID     string    `json:"key_id"`
	ClientID  string    `json:"client_id,omitempty"`
	State     string    `json:"state"`
	Created   time.Time `json:"created,omitzero"`    // from key.created, or the rotation that introduced the key
	FirstSeen time.Time `json:"first_seen,omitzero"` // first request with the key
	LastUsed  time.Time `json:"last_used,omitzero"`  // last request with the key; zero: never used
	// AgeDays is the key's age (from Created, else FirstSeen); UnusedDays how long since its last
	// request (or since Created when it was never used).
	AgeDays    float64 `json:"age_days"`
	UnusedDays float64 `json:"unused_days,omitempty"`
	Requests   uint64  `json:"requests"`
	// LimitDays is the policy limit that was exceeded (max_key_age, unused_after or expiring_within;
	// detect.leak.scope_standing_days for standing_forbidden).
	LimitDays float64 `json:"limit_days"`
	// HistoryDays is the scope history looked back over (detect.leak.scope_history) and Refused the
	// routes refused on at least LimitDays days of it, the last day included, most days first; set
	// for standing_forbidden. Requests are then their forbidden requests over the history.
	HistoryDays float64               `json:"history_days,omitempty"`
	Refused     []HygieneRefusedRoute `json:"refused,omitempty"`
	// ExpiresAt is when the key stops working by itself (lifecycle events); DaysLeft until then,
	// negative once it passed. Set for the expiring kind.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	DaysLeft  float64    `json:"days_left,omitempty"`
	// FoldedFindings is, in a finding the engine folded others into, how many it stands for
	// (MaxFindingsPerKey, MaxFindingsPerRun); the rest of the evidence is the first one's.
	FoldedFindings int `json:"folded_findings,omitempty"`
}

// HygieneRefusedRoute is a route a key was refused (forbidden) on day after day.
type HygieneRefusedRoute struct {
	Method string `json:"method,omitempty"`
	Route  string `json:"route"`
	// Needs are the scopes detect.leak.route_scopes says the route needs (any one grants it);
	// Granted is true when the key's scopes hold one (then the gateway and the map disagree).
	Needs    []string `json:"needs,omitempty"`
	Granted  bool     `json:"granted,omitempty"`
	Days     uint64   `json:"days"` // 24 h periods of the history it was refused on
	Requests uint64   `json:"requests"`
	// Callers are the distinct (network, user agent) pairs refused on it: the ASN, else the /24 or
	// /48 of the address, as scope probing tells callers.
	Callers   uint64    `json:"callers"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// fields says a hygiene finding's evidence in words.
func (e HygieneEvidence) fields() finding.Fields {
	age := fmt.Sprintf("%.0f days (limit %.0f)", e.AgeDays, e.LimitDays)
	switch {
	case e.Kind == hygieneStandingForbidden && e.Created.IsZero():
		age = "" // a key seen only in traffic: its age says nothing of its refusals
	case e.ExpiresAt != nil || e.Kind == hygieneStandingForbidden:
		age = fmt.Sprintf("%.0f days", e.AgeDays)
	}
	var l finding.Fields
	l.Add("Problem", strings.ReplaceAll(e.Kind, "_", " "))
	l.Add("Key state", e.State)
	l.Add("Age", age)
	if e.Kind == hygieneStandingForbidden {
		l.Add("Refused requests", fmt.Sprint(e.Requests))
	} else {
		l.Add("Requests", fmt.Sprint(e.Requests))
	}
	if e.ExpiresAt != nil {
		left := fmt.Sprintf("%.1f days left", e.DaysLeft)
		if e.DaysLeft < 0 {
			left = fmt.Sprintf("expired %.1f days ago", -e.DaysLeft)
		}
		l.Add("Expires", fmt.Sprintf("%s (%s; reported within %.0f days)", finding.Stamp(*e.ExpiresAt), left, e.LimitDays))
	}
	if e.LastUsed.IsZero() {
		l.Add("Last used", "never")
	} else {
		l.Add("Last used", finding.Stamp(e.LastUsed))
	}
	if e.UnusedDays > 0 {
		l.Add("Unused for", fmt.Sprintf("%.0f days", e.UnusedDays))
	}
	var refused []string
	for _, r := range e.Refused {
		needs := ""
		if len(r.Needs) > 0 {
			needs = ", needs " + strings.Join(r.Needs, " or ")
			if r.Granted {
				needs += " (which it holds)"
			}
		}
		refused = append(refused, fmt.Sprintf("%s: %d of the last %.0f days, %d requests from %d caller(s), last %s%s",
			hygieneRouteName(r.Method, r.Route), r.Days, e.HistoryDays, r.Requests, r.Callers, finding.Stamp(r.LastSeen), needs))
	}
	if len(refused) > 0 {
		l.Add("Refused", strings.Join(refused, "\n"))
	}
	return l
}
