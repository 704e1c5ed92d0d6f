package config

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/keywatch/keywatch/internal/schedule"
)

func (d Detect) validate() []error {
	var errs []error
	bad := func(path string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	for path, s := range map[string]string{
		"detect.lingering.schedule": d.Lingering.Schedule, "detect.spike.schedule": d.Spike.Schedule,
		"detect.leak.schedule": d.Leak.Schedule, "detect.hygiene.schedule": d.Hygiene.Schedule,
	} {
		if s == "" {
			continue
		}
		if _, err := schedule.Parse(s); err != nil {
			bad(path, "%q: %v (six fields with seconds, e.g. \"0 */5 * * * *\", or @every 5m)", s, err)
		}
	}
	positive := map[string]Duration{
		"detect.lingering.info_before": d.Lingering.InfoBefore, "detect.lingering.warning_before": d.Lingering.WarningBefore,
		"detect.lingering.critical_before": d.Lingering.CriticalBefore, "detect.lingering.after_retired": d.Lingering.AfterRetired,
		"detect.spike.after_step": d.Spike.AfterStep, "detect.spike.baseline": d.Spike.Baseline,
		"detect.spike.short_window": d.Spike.ShortWindow, "detect.spike.long_window": d.Spike.LongWindow,
		"detect.leak.window": d.Leak.Window, "detect.leak.baseline": d.Leak.Baseline,
		"detect.hygiene.max_key_age": d.Hygiene.MaxKeyAge, "detect.hygiene.unused_after": d.Hygiene.UnusedAfter,
	}
	for path, v := range positive {
		if v <= 0 {
			bad(path, "%s: must be positive", v)
		}
	}
	if d.Hygiene.ExpiringWithin < 0 {
		bad("detect.hygiene.expiring_within", "%s: must not be negative", d.Hygiene.ExpiringWithin)
	}
	if d.Lingering.QuietFor < 0 {
		bad("detect.lingering.quiet_for", "%s: must not be negative", d.Lingering.QuietFor)
	}
	if d.Lingering.CadenceFactor < 1 || d.Lingering.CadenceFactor > 10 {
		bad("detect.lingering.cadence_factor", "%g: want 1 to 10 (times a caller's usual gap)", d.Lingering.CadenceFactor)
	}
	if d.Lingering.CadenceLookback < Duration(24*time.Hour) {
		bad("detect.lingering.cadence_lookback", "%s: want at least 24h (a daily job's rhythm must fit)", d.Lingering.CadenceLookback)
	}
	if !(d.Lingering.InfoBefore >= d.Lingering.WarningBefore && d.Lingering.WarningBefore >= d.Lingering.CriticalBefore) {
		bad("detect.lingering.warning_before", "want info_before >= warning_before >= critical_before (%s, %s, %s)",
			d.Lingering.InfoBefore, d.Lingering.WarningBefore, d.Lingering.CriticalBefore)
	}
	if d.Spike.ShortWindow > d.Spike.LongWindow {
		bad("detect.spike.short_window", "%s is longer than detect.spike.long_window %s", d.Spike.ShortWindow, d.Spike.LongWindow)
	}
	if d.Spike.MinRate < 0 || d.Spike.MinRate > 1 {
		bad("detect.spike.min_rate", "%g: want 0 to 1", d.Spike.MinRate)
	}
	if d.Spike.MinZ <= 0 {
		bad("detect.spike.min_z", "%g: must be positive", d.Spike.MinZ)
	}
	if d.Spike.MinFailures < 1 {
		bad("detect.spike.min_failures", "%d: want at least 1", d.Spike.MinFailures)
	}
	if d.Leak.Window > Duration(24*time.Hour) || d.Leak.Window < Duration(time.Minute) {
		bad("detect.leak.window", "%s: want 1m to 24h", d.Leak.Window)
	}
	if d.Leak.MinRequests < 1 {
		bad("detect.leak.min_requests", "%d: want at least 1", d.Leak.MinRequests)
	}
	if d.Leak.FanoutMinZ <= 0 {
		bad("detect.leak.fanout_min_z", "%g: must be positive", d.Leak.FanoutMinZ)
	}
	if d.Leak.WarningScore <= 0 || d.Leak.CriticalScore < d.Leak.WarningScore {
		bad("detect.leak.critical_score", "want 0 < warning_score <= critical_score (%g, %g)", d.Leak.WarningScore, d.Leak.CriticalScore)
	}
	if d.Leak.NewFor < Duration(time.Hour) || d.Leak.NewFor > Duration(7*24*time.Hour) || d.Leak.NewFor >= d.Leak.Baseline {
		bad("detect.leak.new_for", "%s: want 1h to 7d, and shorter than detect.leak.baseline (%s)", d.Leak.NewFor, d.Leak.Baseline)
	}
	if d.Leak.AllowedLateness < 0 || d.Leak.AllowedLateness > Duration(24*time.Hour) {
		bad("detect.leak.allowed_lateness", "%s: want 0s to 24h", d.Leak.AllowedLateness)
	}
	if d.Leak.ScoreScopeProbing < 0 {
		bad("detect.leak.score_scope_probing", "%g: must not be negative", d.Leak.ScoreScopeProbing)
	}
	if d.Leak.ScopeProbingMinRequests < 1 {
		bad("detect.leak.scope_probing_min_requests", "%d: want at least 1", d.Leak.ScopeProbingMinRequests)
	}
	if d.Leak.ScopeHistory < 0 {
		bad("detect.leak.scope_history", "%s: must not be negative", d.Leak.ScopeHistory)
	}
	if days := int(time.Duration(d.Leak.ScopeHistory) / (24 * time.Hour)); d.Leak.ScopeHistory > 0 && (d.Leak.ScopeStandingDays < 1 || d.Leak.ScopeStandingDays > days) {
		bad("detect.leak.scope_standing_days", "%d: want 1 to the %d whole days of detect.leak.scope_history", d.Leak.ScopeStandingDays, days)
	}
	if _, err := d.Leak.RouteScopeRules(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// RouteScopeRule is one entry of detect.leak.route_scopes: the routes a pattern matches need one
// of Scopes.
type RouteScopeRule struct {
	Pattern string   // as configured, e.g. "POST /v1/orders*"
	Method  string   // upper case; "" matches every method
	Scopes  []string // any one of them grants the route
	route   *regexp.Regexp
	literal int // characters of the route glob that are not *
}

// Match reports whether the rule covers a request to route with method.
func (r RouteScopeRule) Match(method, route string) bool {
	return (r.Method == "" || strings.EqualFold(r.Method, method)) && r.route.MatchString(route)
}

// RouteScopeRules compiles detect.leak.route_scopes, most specific first: the rule whose route glob
// has the most literal characters, then one that names a method, then by pattern. The first rule
// that matches a request decides the scopes it needs. A pattern is "[METHOD ]glob" (METHOD * is
// every method) where * in the glob matches any run of characters, "/" included, and the glob
// covers the whole route.
func (l Leak) RouteScopeRules() ([]RouteScopeRule, error) {
	var rules []RouteScopeRule
	var errs []string
	for pattern, scopes := range l.RouteScopes {
		r := RouteScopeRule{Pattern: pattern}
		glob := strings.TrimSpace(pattern)
		if method, rest, ok := strings.Cut(glob, " "); ok {
			r.Method, glob = strings.ToUpper(method), strings.TrimSpace(rest)
			if r.Method == "*" {
				r.Method = ""
			}
			if strings.IndexFunc(r.Method, func(c rune) bool { return c < 'A' || c > 'Z' }) >= 0 {
				errs = append(errs, fmt.Sprintf("%q: want [METHOD ]glob, e.g. \"POST /v1/orders*\"", pattern))
				continue
			}
		}
		if glob == "" || strings.ContainsAny(glob, " \t") {
			errs = append(errs, fmt.Sprintf("%q: want [METHOD ]glob, e.g. \"POST /v1/orders*\"", pattern))
			continue
		}
		parts := strings.Split(glob, "*")
		for i, p := range parts {
			r.literal += len(p)
			parts[i] = regexp.QuoteMeta(p)
		}
		r.route = regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
		for sc := range strings.SplitSeq(scopes, ",") {
			if sc = strings.TrimSpace(sc); sc != "" {
				r.Scopes = append(r.Scopes, sc)
			}
		}
		if len(r.Scopes) == 0 {
			errs = append(errs, fmt.Sprintf("%q: no scope given", pattern))
			continue
		}
		slices.Sort(r.Scopes)
		r.Scopes = slices.Compact(r.Scopes)
		rules = append(rules, r)
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return nil, fmt.Errorf("detect.leak.route_scopes: %s", strings.Join(errs, "; "))
	}
	slices.SortFunc(rules, func(a, b RouteScopeRule) int {
		return cmp.Or(cmp.Compare(b.literal, a.literal), cmp.Compare(min(len(b.Method), 1), min(len(a.Method), 1)), cmp.Compare(a.Pattern, b.Pattern))
	})
	return rules, nil
}
