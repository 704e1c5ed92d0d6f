package detect

import (
	"cmp"
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
	reason := fmt.Sprintf("%d forbidden request(s) to %d route(s) its scopes (%s) do not grant: %s",
		p.Requests, p.RoutesTotal, scopes, strings.Join(routes, ", "))
	if p.Callers > 0 {
		reason += fmt.Sprintf("; from %d caller(s) (%d address(es))", p.Callers, p.Addresses)
	}
	if p.StandingRequests > 0 {
		reason += fmt.Sprintf("; %d more on routes it is refused on every day, left out", p.StandingRequests)
	}
	s = LeakSignal{Kind: leakSignalScopeProbing, Score: r.cfg.ScoreScopeProbing, Reason: reason, Scope: p}
	top := p.Routes[0]
	more := ""
	if p.RoutesTotal > 1 {
		more = fmt.Sprintf(" and %d more route(s)", p.RoutesTotal-1)
	}
	phrase = fmt.Sprintf("probed routes outside its scopes (%s): %d forbidden requests to %s (needs %s)%s %s",
		scopes, p.Requests, leakRouteName(top), strings.Join(top.Scopes, " or "), more, within)
	return s, phrase, true
}

// Scope probing against the key's history. A forbidden request outside the key's scopes is
// standing, a misconfiguration the client lives with rather than probing, when all of these hold:
//   - its route was refused on at least detect.leak.scope_standing_days days (24 h periods) of the
//     key's history (detect.leak.scope_history before the window);
//   - its caller (network, the ASN or else the /24 or /48 of the address, and user agent:
//     leakScopeCaller) was refused in that history too;
//   - the route's requests in the window from such callers are within leakScopeBurstFactor times
//     its usual count (its history's requests per hour it was refused in, scaled to the window).
//
// Standing requests are left out of the signal; the rest (new routes, routes refused on fewer
// days, new callers, bursts) count. When every route of the window is standing but the
// window holds at least leakScopeManyRoutes of them, more than any one day of the history, the
// key is being walked across routes and all count. The hygiene detector reports standing
// refusals once (hygiene_judge.go).

const (
	// leakScopeBurstFactor: a standing route refused this many times more often than usual in the
	// window is probing again (a client's retries vary by 2x; a script trying a route does not stop
	// at 4x).
	leakScopeBurstFactor = 4
	// leakScopeManyRoutes: a window refused on this many routes at once, more than on any day of
	// its history, is judged whole even when each route alone is standing.
	leakScopeManyRoutes = 5
	// leakScopeHistoryCallers caps the history's callers read per key (busiest first): a standing
	// misconfiguration has a handful; beyond the cap a caller counts as new, which errs towards
	// scoring.
	leakScopeHistoryCallers = 1000
)

// leakForbiddenCall is a key's forbidden requests in the window from one address and user agent
// to one route.
type leakForbiddenCall struct {
	method, route string
	ip            string
	caller        leakScopeCallerID // the network and the user agent
	requests      uint64
	first, last   time.Time
}

// leakScopeCallerID is a caller of scope probing's history: network (leakScopeCaller), user agent.
type leakScopeCallerID struct{ net, userAgent string }

// leakScopeHistory is a key's forbidden history: per method and route, and its callers.
type leakScopeHistory struct {
	routes  map[[2]string]leakScopeRouteHistory
	callers map[leakScopeCallerID]bool
}

// leakScopeRouteHistory is one route's forbidden requests over a span (readForbiddenRoutes): how
// many, on which days (24 h periods back from the span's end, 0 the latest), in how many distinct
// hours, from how many callers (leakScopeCaller and user agent), the first and the last. Scope
// probing reads the history before its window; hygiene the scope history up to now.
type leakScopeRouteHistory struct {
	requests    uint64
	days        []uint32
	hours       uint64
	callers     uint64
	first, last time.Time
}

// leakScopeRoutes sums each key's calls per method and route, as leakScopeProbes takes them, with
// at most leakScopeSamples sample addresses and user agents (the first by name).
func leakScopeRoutes(calls map[string][]leakForbiddenCall) map[string][]LeakProbedRoute {
	out := map[string][]LeakProbedRoute{}
	for key, cs := range calls {
		byRoute := map[[2]string]*LeakProbedRoute{}
		var order [][2]string
		for _, c := range cs {
			id := [2]string{c.method, c.route}
			p := byRoute[id]
			if p == nil {
				p = &LeakProbedRoute{Method: c.method, Route: c.route, FirstSeen: c.first, LastSeen: c.last}
				byRoute[id] = p
				order = append(order, id)
			}
			p.Requests += c.requests
			if c.first.Before(p.FirstSeen) {
				p.FirstSeen = c.first
			}
			if c.last.After(p.LastSeen) {
				p.LastSeen = c.last
			}
			p.SampleIPs = append(p.SampleIPs, c.ip)
			p.SampleUserAgents = append(p.SampleUserAgents, c.caller.userAgent)
		}
		for _, id := range order {
			p := byRoute[id]
			p.SampleIPs = leakScopeSample(p.SampleIPs)
			p.SampleUserAgents = leakScopeSample(p.SampleUserAgents)
			out[key] = append(out[key], *p)
		}
	}
	return out
}

// leakScopeSamples is how many sample addresses and user agents a probed route shows.
const leakScopeSamples = 5

func leakScopeSample(s []string) []string {
	s = slices.Compact(slices.Sorted(slices.Values(s)))
	return s[:min(len(s), leakScopeSamples)]
}

// leakScopeJudge judges the keys' window calls against their histories (hist; nil: none read, or
// the key has none): the probes of the keys whose requests outside their scopes, standing ones
// left out, still reach minRequests, with how many callers and addresses those came from.
func leakScopeJudge(model *rotation.Model, rules []config.RouteScopeRule, keys []string, calls map[string][]leakForbiddenCall,
	hist map[string]*leakScopeHistory, standingDays int, window time.Duration, minRequests uint64) map[string]*LeakScopeProbe {
	out := map[string]*LeakScopeProbe{}
	for _, key := range keys {
		kept, standing := leakScopeAgainst(model, rules, key, calls[key], hist[key], standingDays, window)
		p := leakScopeProbes(model, rules, leakScopeRoutes(map[string][]leakForbiddenCall{key: kept}), minRequests)[key]
		if p == nil {
			continue
		}
		p.StandingRequests = standing
		k := model.Key(key)
		callers, addresses := map[[2]string]bool{}, map[string]bool{}
		for _, c := range kept {
			if rule, ok := leakRouteRule(rules, c.method, c.route); ok && !slices.ContainsFunc(rule.Scopes, k.HasScope) {
				callers[[2]string{c.ip, c.caller.userAgent}], addresses[c.ip] = true, true
			}
		}
		p.Callers, p.Addresses = len(callers), len(addresses)
		out[key] = p
	}
	return out
}

// leakScopeAgainst returns the key's window calls that are not standing against its history h (nil:
// none), and how many forbidden requests outside its scopes were standing. Calls on routes the
// key's scopes grant, or no rule covers, are returned as they are (leakScopeProbes leaves them out).
func leakScopeAgainst(model *rotation.Model, rules []config.RouteScopeRule, key string, calls []leakForbiddenCall, h *leakScopeHistory,
	standingDays int, window time.Duration) (kept []leakForbiddenCall, standing uint64) {
	k := model.Key(key)
	if h == nil || k == nil || standingDays <= 0 {
		return calls, 0
	}
	outside := func(c leakForbiddenCall) bool {
		rule, ok := leakRouteRule(rules, c.method, c.route)
		return ok && !slices.ContainsFunc(rule.Scopes, k.HasScope)
	}
	// Per route: the window's requests from callers of the history, against its usual count.
	known := map[[2]string]uint64{}
	routes := map[[2]string]bool{}
	for _, c := range calls {
		if !outside(c) {
			continue
		}
		routes[[2]string{c.method, c.route}] = true
		if h.callers[c.caller] {
			known[[2]string{c.method, c.route}] += c.requests
		}
	}
	isStanding := func(id [2]string) bool {
		rh, ok := h.routes[id]
		if !ok || len(rh.days) < standingDays || rh.hours == 0 {
			return false
		}
		usual := float64(rh.requests) / float64(rh.hours) * window.Hours()
		return float64(known[id]) <= leakScopeBurstFactor*max(1, usual)
	}
	standingRoutes := 0
	for id := range routes {
		if isStanding(id) {
			standingRoutes++
		}
	}
	if standingRoutes == len(routes) && len(routes) >= leakScopeManyRoutes && len(routes) > leakScopeBusiestDay(h) {
		return calls, 0
	}
	for _, c := range calls {
		if outside(c) && h.callers[c.caller] && isStanding([2]string{c.method, c.route}) {
			standing += c.requests
			continue
		}
		kept = append(kept, c)
	}
	return kept, standing
}

// leakScopeBusiestDay is the most routes the key was refused on in one day of its history.
func leakScopeBusiestDay(h *leakScopeHistory) int {
	perDay := map[uint32]int{}
	for _, rh := range h.routes {
		for _, d := range rh.days {
			perDay[d]++
		}
	}
	busiest := 0
	for _, n := range perDay {
		busiest = max(busiest, n)
	}
	return busiest
}
