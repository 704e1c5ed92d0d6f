package detect

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// judge returns the findings for one active key; clientID falls back to the client seen in traffic.
func (d *Hygiene) judge(now time.Time, keyID, clientID, state string, created time.Time, u keyUsage) []finding.Finding {
	if clientID == "" {
		clientID = u.clientID
	}
	born := created
	if born.IsZero() {
		born = u.firstSeen
	}
	if born.IsZero() {
		return nil // no age to judge: neither created nor used
	}
	ev := HygieneEvidence{
		KeyID: keyID, ClientID: clientID, State: state, Created: created, FirstSeen: u.firstSeen,
		LastUsed: u.lastSeen, AgeDays: hygieneDays(now.Sub(born)), Requests: u.requests,
	}
	label := "key " + keyID
	if clientID != "" {
		label = clientID + " " + label
	}
	var out []finding.Finding
	maxAge := time.Duration(d.cfg.MaxKeyAge)
	if age := now.Sub(born); age > maxAge {
		e := ev
		e.Kind, e.LimitDays = hygienePolicyAge, hygieneDays(maxAge)
		f := d.finding(now, e, age, maxAge)
		f.Summary = fmt.Sprintf("%s is %.0f days old and no rotation has started (policy: rotate within %.0f days)",
			label, e.AgeDays, e.LimitDays)
		out = append(out, f)
	}
	unusedAfter := time.Duration(d.cfg.UnusedAfter)
	idleSince := u.lastSeen
	if idleSince.IsZero() {
		idleSince = born
	}
	if idle := now.Sub(idleSince); idle > unusedAfter {
		e := ev
		e.Kind, e.UnusedDays, e.LimitDays = hygieneUnused, hygieneDays(idle), hygieneDays(unusedAfter)
		f := d.finding(now, e, idle, unusedAfter)
		if u.lastSeen.IsZero() {
			f.Summary = fmt.Sprintf("%s has never been used in the %.0f days since it was created; revoke it if it is not needed",
				label, e.UnusedDays)
		} else {
			f.Summary = fmt.Sprintf("%s has not been used for %.0f days (last used %s); revoke it if it is not needed",
				label, e.UnusedDays, u.lastSeen.Format(time.DateOnly))
		}
		out = append(out, f)
	}
	return out
}

// expiring reports an active key whose expires_at is within detect.hygiene.expiring_within, or
// passed, while no rotation has started: its clients break when it expires. Warning, critical from
// a day before expiry.
func (d *Hygiene) expiring(now time.Time, k *rotation.Key, u keyUsage) (finding.Finding, bool) {
	within := time.Duration(d.cfg.ExpiringWithin)
	left := k.ExpiresAt.Sub(now)
	if within <= 0 || k.ExpiresAt.IsZero() || left > within {
		return finding.Finding{}, false
	}
	clientID := cmp.Or(k.ClientID, u.clientID)
	expires := k.ExpiresAt
	e := HygieneEvidence{
		Kind: hygieneExpiring, KeyID: k.ID, ClientID: clientID, State: string(k.State), Created: k.Created,
		FirstSeen: u.firstSeen, LastUsed: u.lastSeen, Requests: u.requests, LimitDays: hygieneDays(within),
		ExpiresAt: &expires, DaysLeft: hygieneDays(left),
	}
	if born := cmp.Or(k.Created, u.firstSeen); !born.IsZero() {
		e.AgeDays = hygieneDays(now.Sub(born))
	}
	f := finding.New(d.Name(), now, k.ID, clientID, "")
	f.Fingerprint = finding.Fingerprint(d.Name(), k.ID, clientID, hygieneExpiring)
	f.Severity, f.Evidence, f.Fields = finding.Warning, e, e.fields()
	if left < 24*time.Hour {
		f.Severity = finding.Critical
	}
	// 1 at the edge of the window, growing as expiry nears (2 at expiry, more after it).
	f.Score = 1 + float64(within-left)/float64(within)
	label := strings.TrimSpace(clientID + " key " + k.ID)
	if left > 0 {
		f.Summary = fmt.Sprintf("%s expires in %s (%s) and no rotation has started; its callers break then",
			label, Span(left), finding.Stamp(expires))
	} else {
		f.Summary = fmt.Sprintf("%s expired %s ago (%s) and no rotation has started", label, Span(-left), finding.Stamp(expires))
	}
	return f, true
}

// finding builds a finding of one kind. Its fingerprint takes the kind in the rotation slot, so a
// key has one fingerprint per kind; the finding itself names no rotation. Severity is info, and
// warning past twice the limit. Score is how many times over the limit the key is (1.5 = half as
// long again as the policy allows).
func (d *Hygiene) finding(now time.Time, e HygieneEvidence, over, limit time.Duration) finding.Finding {
	f := finding.New(d.Name(), now, e.KeyID, e.ClientID, "")
	f.Fingerprint = finding.Fingerprint(d.Name(), e.KeyID, e.ClientID, e.Kind)
	f.Severity = finding.Info
	if over > 2*limit {
		f.Severity = finding.Warning
	}
	f.Score = float64(over) / float64(limit)
	f.Evidence, f.Fields = e, e.fields()
	return f
}

func hygieneDays(d time.Duration) float64 { return d.Hours() / 24 }

// standingForbidden reports a key refused (forbidden) on the same routes day after day: each route
// refused on at least standingDays days (24 h periods) of the scope history, the last day
// included. It is a misconfiguration, the key lacking a scope its client needs or the client
// calling what it should not, that the leak detector leaves out of scope probing: reported once,
// as one info finding per key that lasts while the refusals go on. k is nil for a key seen only in
// traffic; u is its use (key_usage).
func (d *Hygiene) standingForbidden(now time.Time, k *rotation.Key, keyID string, u keyUsage, refusals map[[2]string]leakScopeRouteHistory) (finding.Finding, bool) {
	var routes []HygieneRefusedRoute
	var requests uint64
	for id, r := range refusals {
		if len(r.days) < d.standingDays || !slices.Contains(r.days, 0) {
			continue
		}
		rt := HygieneRefusedRoute{Method: id[0], Route: id[1], Days: uint64(len(r.days)), Requests: r.requests, Callers: r.callers,
			FirstSeen: r.first, LastSeen: r.last}
		if rule, ok := leakRouteRule(d.rules, id[0], id[1]); ok {
			rt.Needs = rule.Scopes
			rt.Granted = k != nil && slices.ContainsFunc(rule.Scopes, k.HasScope)
		}
		routes = append(routes, rt)
		requests += r.requests
	}
	if len(routes) == 0 {
		return finding.Finding{}, false
	}
	slices.SortFunc(routes, func(a, b HygieneRefusedRoute) int {
		return cmp.Or(cmp.Compare(b.Days, a.Days), cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Route, b.Route), cmp.Compare(a.Method, b.Method))
	})
	e := HygieneEvidence{Kind: hygieneStandingForbidden, KeyID: keyID, ClientID: u.clientID, State: string(rotation.Active),
		FirstSeen: u.firstSeen, LastUsed: u.lastSeen,
		Requests: requests, LimitDays: float64(d.standingDays), HistoryDays: hygieneDays(d.scopeHistory), Refused: routes}
	if k != nil {
		e.ClientID, e.State, e.Created = cmp.Or(k.ClientID, u.clientID), string(k.State), k.Created
		if !k.Created.IsZero() {
			e.AgeDays = hygieneDays(now.Sub(k.Created))
		}
	}
	f := finding.New(d.Name(), now, keyID, e.ClientID, "")
	f.Fingerprint = finding.Fingerprint(d.Name(), keyID, e.ClientID, hygieneStandingForbidden)
	f.Severity, f.Evidence, f.Fields = finding.Info, e, e.fields()
	// How many times over the standing threshold its most refused route is.
	f.Score = float64(routes[0].Days) / float64(d.standingDays)
	top := routes[0]
	needs := ""
	switch {
	case top.Granted:
		needs = fmt.Sprintf(" (route_scopes says its scope %s grants it: check the gateway's scopes)", strings.Join(top.Needs, " or "))
	case len(top.Needs) > 0:
		needs = fmt.Sprintf(" (needs %s)", strings.Join(top.Needs, " or "))
	}
	more := ""
	if len(routes) > 1 {
		more = fmt.Sprintf(" and %d more route(s)", len(routes)-1)
	}
	f.Summary = fmt.Sprintf("%s refused on %s on %d of the last %.0f days%s%s, %d requests from %d caller(s); fix its scopes or the client",
		strings.TrimSpace(e.ClientID+" key "+keyID), hygieneRouteName(top.Method, top.Route), top.Days, e.HistoryDays, needs, more, requests, top.Callers)
	return f, true
}

func hygieneRouteName(method, route string) string { return strings.TrimSpace(method + " " + route) }
