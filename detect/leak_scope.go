package detect

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// Scope probing: a key whose lifecycle events state its scopes, used in the window against routes
// that detect.leak.route_scopes says need a scope it does not hold, and answered forbidden by the
// gateway. A client calling what its key does not grant is a bug at worst; someone holding a
// leaked key and trying what else it opens is the pattern this catches. Keys without stated scopes
// and routes without a rule are never judged; requests the gateway let through are not either
// (then the rule or the key's metadata is wrong, not the caller).

const leakSignalScopeProbing = "scope_probing"

// leakProbedRoutesShown caps the routes listed in evidence, leakProbedRoutesInReason those named in
// the signal's reason (busiest first).
const (
	leakProbedRoutesShown    = 20
	leakProbedRoutesInReason = 3
)

// leakSelectForbiddenKeys finds the keys with forbidden answers in the window, from the per-minute
// rollup (the minutes holding the window's start and now included, so that it finds every key
// leakSelectForbiddenRoutes counts). Arguments: window start, now.
const leakSelectForbiddenKeys = `
SELECT DISTINCT key_id
FROM auth_events_1m
WHERE minute >= toStartOfMinute(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND minute < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND outcome = 'forbidden' AND key_id != ''`

// leakSelectForbiddenRoutes reads the given keys' forbidden requests in the window per method and
// route, from the raw events (through the primary key: key_id, ts), with samples of who sent them.
// Arguments: keys, window start, now.
const leakSelectForbiddenRoutes = `
SELECT
    key_id, method, route, count(), min(ts), max(ts),
    arrayMap(ip -> replaceRegexpOne(IPv6NumToString(ip), '^::ffff:', ''), groupUniqArray(5)(ip)),
    groupUniqArray(5)(user_agent)
FROM auth_events
WHERE key_id IN ? AND ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND outcome = 'forbidden'
GROUP BY key_id, method, route`

// LeakScopeProbe is the evidence of a scope_probing signal: the key's forbidden requests to routes
// its scopes do not grant.
type LeakScopeProbe struct {
	// KeyScopes are the scopes the key's lifecycle events state (the latest by event time).
	KeyScopes []string `json:"key_scopes"`
	// Requests are the forbidden requests outside KeyScopes in the window, over RoutesTotal routes;
	// Share is Requests over all the key's requests in the window (0..1).
	Requests    uint64            `json:"requests"`
	Share       float64           `json:"share"`
	RoutesTotal int               `json:"routes_total"`
	Routes      []LeakProbedRoute `json:"routes"` // busiest first, at most 20
}

// LeakProbedRoute is one method and route the key was refused on, and the scope it needs.
type LeakProbedRoute struct {
	Method string `json:"method,omitempty"`
	Route  string `json:"route"`
	// Scopes are those the route needs (any one grants it), by the rule Pattern of
	// detect.leak.route_scopes.
	Scopes           []string  `json:"scopes"`
	Pattern          string    `json:"pattern"`
	Requests         uint64    `json:"requests"`
	FirstSeen        time.Time `json:"first_seen"`
	LastSeen         time.Time `json:"last_seen"`
	SampleIPs        []string  `json:"sample_ips"`
	SampleUserAgents []string  `json:"sample_user_agents"`
}

// scopeProbes returns, per key, its forbidden requests outside its scopes in the window when they
// reach ScopeProbingMinRequests. It loads the rotation model into r when it has to read it.
func (d *Leak) scopeProbes(ctx context.Context, r *leakRun) (map[string]*LeakScopeProbe, error) {
	if len(d.rules) == 0 || d.cfg.ScoreScopeProbing <= 0 {
		return nil, nil
	}
	forbidden, err := leakQueryStrings(ctx, d.conn, leakSelectForbiddenKeys, r.windowStart.UnixMilli(), r.now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("find keys answered forbidden since %s in auth_events_1m: %w", r.windowStart.Format(time.RFC3339), err)
	}
	if len(forbidden) == 0 {
		return nil, nil
	}
	if r.model == nil {
		if r.model, err = rotation.Load(ctx, d.conn); err != nil {
			return nil, err
		}
	}
	var scoped []string
	for _, key := range forbidden {
		if k := r.model.Key(key); k != nil && len(k.Scopes) > 0 {
			scoped = append(scoped, key)
		}
	}
	if len(scoped) == 0 {
		return nil, nil
	}
	slices.Sort(scoped)
	rows, err := d.conn.Query(ctx, leakSelectForbiddenRoutes, scoped, r.windowStart.UnixMilli(), r.now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read forbidden routes of %d keys from auth_events: %w", len(scoped), err)
	}
	defer rows.Close()
	out := map[string]*LeakScopeProbe{}
	for rows.Next() {
		var key string
		var p LeakProbedRoute
		if err := rows.Scan(&key, &p.Method, &p.Route, &p.Requests, &p.FirstSeen, &p.LastSeen, &p.SampleIPs, &p.SampleUserAgents); err != nil {
			return nil, fmt.Errorf("read forbidden routes from auth_events: %w", err)
		}
		k := r.model.Key(key)
		rule, ok := leakRouteRule(d.rules, p.Method, p.Route)
		if !ok || slices.ContainsFunc(rule.Scopes, k.HasScope) {
			continue // a route without a rule, or one the key's scopes grant: not judged
		}
		p.Scopes, p.Pattern = rule.Scopes, rule.Pattern
		p.FirstSeen, p.LastSeen = p.FirstSeen.UTC(), p.LastSeen.UTC()
		slices.Sort(p.SampleIPs)
		slices.Sort(p.SampleUserAgents)
		probe := out[key]
		if probe == nil {
			probe = &LeakScopeProbe{KeyScopes: k.Scopes}
			out[key] = probe
		}
		probe.Requests += p.Requests
		probe.Routes = append(probe.Routes, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read forbidden routes from auth_events: %w", err)
	}
	for key, probe := range out {
		if probe.Requests < uint64(d.cfg.ScopeProbingMinRequests) {
			delete(out, key)
			continue
		}
		slices.SortFunc(probe.Routes, func(a, b LeakProbedRoute) int {
			return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Route, b.Route), cmp.Compare(a.Method, b.Method))
		})
		probe.RoutesTotal = len(probe.Routes)
		if len(probe.Routes) > leakProbedRoutesShown {
			probe.Routes = probe.Routes[:leakProbedRoutesShown]
		}
	}
	return out, nil
}

// leakRouteRule is the first (most specific) rule that covers the request.
func leakRouteRule(rules []config.RouteScopeRule, method, route string) (config.RouteScopeRule, bool) {
	for _, r := range rules {
		if r.Match(method, route) {
			return r, true
		}
	}
	return config.RouteScopeRule{}, false
}

func leakRouteName(rt LeakProbedRoute) string {
	if rt.Method == "" {
		return rt.Route
	}
	return rt.Method + " " + rt.Route
}

// scopeSignal is the key's scope_probing signal and its summary phrase; ok is false without one.
func (r *leakRun) scopeSignal(key string, total uint64, within string) (s LeakSignal, phrase string, ok bool) {
	p := r.probes[key]
	if p == nil {
		return LeakSignal{}, "", false
	}
	if total > 0 {
		p.Share = leakRound4(min(1, float64(p.Requests)/float64(total)))
	}
	scopes := strings.Join(p.KeyScopes, ", ")
	// The reason names the busiest routes, so that a notification shows them without the evidence.
	var routes []string
	for _, rt := range p.Routes[:min(len(p.Routes), leakProbedRoutesInReason)] {
		routes = append(routes, fmt.Sprintf("%s %d (needs %s)", leakRouteName(rt), rt.Requests, strings.Join(rt.Scopes, " or ")))
	}
	if p.RoutesTotal > len(routes) {
		routes = append(routes, fmt.Sprintf("%d more", p.RoutesTotal-len(routes)))
	}
	s = LeakSignal{Kind: leakSignalScopeProbing, Score: r.cfg.ScoreScopeProbing,
		Reason: fmt.Sprintf("%d forbidden request(s) to %d route(s) its scopes (%s) do not grant: %s",
			p.Requests, p.RoutesTotal, scopes, strings.Join(routes, ", ")),
		Scope: p}
	top := p.Routes[0]
	more := ""
	if p.RoutesTotal > 1 {
		more = fmt.Sprintf(" and %d more route(s)", p.RoutesTotal-1)
	}
	phrase = fmt.Sprintf("probed routes outside its scopes (%s): %d forbidden requests to %s (needs %s)%s %s",
		scopes, p.Requests, leakRouteName(top), strings.Join(top.Scopes, " or "), more, within)
	return s, phrase, true
}
