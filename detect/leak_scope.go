package detect

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

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

// leakScopeProbes judges each key's forbidden routes: those a rule covers and the key's scopes (in
// model) do not grant count; a key with at least minRequests of them is probing.
func leakScopeProbes(model *rotation.Model, rules []config.RouteScopeRule, routes map[string][]LeakProbedRoute, minRequests uint64) map[string]*LeakScopeProbe {
	out := map[string]*LeakScopeProbe{}
	for key, ps := range routes {
		k := model.Key(key)
		if k == nil || len(k.Scopes) == 0 {
			continue // unknown scopes: not judged
		}
		for _, p := range ps {
			rule, ok := leakRouteRule(rules, p.Method, p.Route)
			if !ok || slices.ContainsFunc(rule.Scopes, k.HasScope) {
				continue // a route without a rule, or one the key's scopes grant: not judged
			}
			p.Scopes, p.Pattern = rule.Scopes, rule.Pattern
			p.SampleIPs, p.SampleUserAgents = slices.Sorted(slices.Values(p.SampleIPs)), slices.Sorted(slices.Values(p.SampleUserAgents))
			probe := out[key]
			if probe == nil {
				probe = &LeakScopeProbe{KeyScopes: k.Scopes}
				out[key] = probe
			}
			probe.Requests += p.Requests
			probe.Routes = append(probe.Routes, p)
		}
	}
	for key, probe := range out {
		if probe.Requests < minRequests {
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
	return out
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
