package detect

import (
	"fmt"
	"strings"
	"time"

	"github.com/keywatch/keywatch/finding"
)

// HygieneEvidence is what a hygiene finding shows about its key.
type HygieneEvidence struct {
	Kind      string    `json:"kind"` // policy_age, unused or expiring
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
	// LimitDays is the policy limit that was exceeded (max_key_age, unused_after or expiring_within).
	LimitDays float64 `json:"limit_days"`
	// ExpiresAt is when the key stops working by itself (lifecycle events); DaysLeft until then,
	// negative once it passed. Set for the expiring kind.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	DaysLeft  float64    `json:"days_left,omitempty"`
	// FoldedFindings is, in a finding the engine folded others into, how many it stands for
	// (MaxFindingsPerKey, MaxFindingsPerRun); the rest of the evidence is the first one's.
	FoldedFindings int `json:"folded_findings,omitempty"`
}

// fields says a hygiene finding's evidence in words.
func (e HygieneEvidence) fields() finding.Fields {
	age := fmt.Sprintf("%.0f days (limit %.0f)", e.AgeDays, e.LimitDays)
	if e.ExpiresAt != nil {
		age = fmt.Sprintf("%.0f days", e.AgeDays)
	}
	var l finding.Fields
	l.Add("Problem", strings.ReplaceAll(e.Kind, "_", " "))
	l.Add("Key state", e.State)
	l.Add("Age", age)
	l.Add("Requests", fmt.Sprint(e.Requests))
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
	return l
}
