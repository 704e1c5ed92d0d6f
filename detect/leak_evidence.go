package detect

import (
	"fmt"
	"strings"
	"time"

	"github.com/keywatch/keywatch/finding"
)

// LeakEvidence is what a leak finding shows: each signal with its numbers, and what the key was
// compared with.
type LeakEvidence struct {
	KeyState       string       `json:"key_state,omitempty"`
	WindowStart    time.Time    `json:"window_start"`
	WindowEnd      time.Time    `json:"window_end"`
	WindowRequests uint64       `json:"window_requests"`
	Signals        []LeakSignal `json:"signals"`
	Baseline       LeakBaseline `json:"baseline"`
	// FoldedFindings is, in a finding the engine folded others into, how many it stands for
	// (MaxFindingsPerKey, MaxFindingsPerRun); the rest of the evidence is the first one's.
	FoldedFindings int `json:"folded_findings,omitempty"`
}

// LeakSignal is one reason a key looks leaked, and the score it added.
type LeakSignal struct {
	Kind   string  `json:"kind"`
	Score  float64 `json:"score"`
	Reason string  `json:"reason"`
	// Places are the new networks (new_network, revoked_new_network) or countries (new_country).
	Places []LeakPlace  `json:"places,omitempty"`
	Fanout *LeakFanout  `json:"fanout,omitempty"`
	Travel []LeakTravel `json:"travel,omitempty"`
	// History is, in impossible_travel between two countries of the baseline, the key's history
	// that says it is in one place at a time.
	History *LeakHistory `json:"history,omitempty"`
	// Scope is the evidence of scope_probing.
	Scope *LeakScopeProbe `json:"scope_probe,omitempty"`
}

// LeakPlace is a network or a country the key used in the window, first used within new_for and
// not in its baseline.
type LeakPlace struct {
	Network   string   `json:"network,omitempty"`
	ASN       uint32   `json:"asn,omitempty"`
	ASOrg     string   `json:"as_org,omitempty"`
	Country   string   `json:"country,omitempty"`
	Countries []string `json:"countries,omitempty"` // of a network
	Networks  []string `json:"networks,omitempty"`  // of a country
	// Requests and Failures are those since FirstSeen; RequestsInWindow those in the window (of the
	// hours the window touches, for a place first seen before it).
	Requests         uint64 `json:"requests"`
	Failures         uint64 `json:"failures"`
	RequestsInWindow uint64 `json:"requests_in_window"`
	// HoursActive counts the distinct hours with use since FirstSeen.
	HoursActive int `json:"hours_active"`
	// Share is RequestsInWindow over all the key's requests in the window (0..1).
	Share            float64   `json:"share"`
	FirstSeen        time.Time `json:"first_seen"`
	LastSeen         time.Time `json:"last_seen"`
	SampleIPs        []string  `json:"sample_ips"`
	SampleUserAgents []string  `json:"sample_user_agents"`
}

// LeakFanout is an hour's distinct addresses against the key's hourly baseline:
// Z = (DistinctIPs - median) / max(1.4826·MAD, √median, 1). The √median floor is the noise of a
// count itself, so a key whose counts never varied is not alarmed by a handful more.
type LeakFanout struct {
	Hour           time.Time `json:"hour"`
	DistinctIPs    uint64    `json:"distinct_ips"`
	BaselineMedian float64   `json:"baseline_median"`
	BaselineMAD    float64   `json:"baseline_mad"`
	Z              float64   `json:"z"`
	BaselineHours  int       `json:"baseline_hours"`
	// Seasonal: the baseline is the same hour of day on other days, not every hour.
	Seasonal bool `json:"seasonal"`
}

// LeakTravel is the key's last use in one country followed by its first use in another sooner
// than the distance between them (country centroids) allows.
type LeakTravel struct {
	From       string    `json:"from"`
	To         string    `json:"to"`
	FromSeen   time.Time `json:"from_seen"`
	ToSeen     time.Time `json:"to_seen"`
	KM         float64   `json:"km"`
	GapMinutes float64   `json:"gap_minutes"`
	KMPerHour  float64   `json:"km_per_hour"`
	// Familiar: both countries are in the key's baseline; the hop counts because its history shows
	// one place at a time.
	Familiar bool `json:"familiar,omitempty"`
}

// LeakHistory is how a key was used over its baseline before the horizon, hour by hour.
type LeakHistory struct {
	Hours             int `json:"hours"`
	HoursTwoCountries int `json:"hours_two_countries"`
	// UserAgentFamilies (the user agent up to its first "/") and Networks are counted up to 16 and
	// 64.
	UserAgentFamilies int `json:"user_agent_families"`
	Networks          int `json:"networks"`
	// Switches are the changes of country between hours of one country each at most 3 hours apart
	// ("DE>US"): hops the key has made before.
	Switches []string `json:"switches,omitempty"`
	OnePlace bool     `json:"one_place"`
}

// LeakBaseline is what the window was compared with.
type LeakBaseline struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Requests uint64    `json:"requests"`
	// Networks are the busiest networks seen in the baseline (at most 20; NetworksTotal counts all).
	Networks      []LeakKnownNetwork `json:"networks"`
	NetworksTotal int                `json:"networks_total"`
	Countries     []string           `json:"countries"`
	// InheritedFrom are the keys whose baseline this key's includes: the key it replaced and its
	// client's other keys, when its own history is young.
	InheritedFrom []string `json:"inherited_from,omitempty"`
}

// LeakKnownNetwork is a network of the baseline.
type LeakKnownNetwork struct {
	Network  string `json:"network"`
	ASOrg    string `json:"as_org,omitempty"`
	Requests uint64 `json:"requests"`
}

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
	// StandingRequests are the window's forbidden requests outside KeyScopes left out as the key's
	// standing misconfiguration: routes and callers refused for days at their usual rate
	// (leak_scope.go).
	StandingRequests uint64 `json:"standing_requests,omitempty"`
	// Callers and Addresses are the distinct (IP, user agent) pairs and addresses Requests came from.
	Callers   int `json:"callers"`
	Addresses int `json:"addresses"`
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

// fields says a leak finding's evidence in words: the window, each signal with its score and
// reason, and the new networks of the signals that have places.
func (e LeakEvidence) fields() finding.Fields {
	window := fmt.Sprintf("%d requests", e.WindowRequests)
	if !e.WindowStart.IsZero() {
		window = fmt.Sprintf("%s – %s, %s", finding.Stamp(e.WindowStart), finding.Stamp(e.WindowEnd), window)
	}
	var l finding.Fields
	l.Add("Window", window)
	l.Add("Key state", e.KeyState)
	var networks []string
	for _, s := range e.Signals {
		l.Add(fmt.Sprintf("Signal %s (+%.0f)", strings.ReplaceAll(s.Kind, "_", " "), s.Score), s.Reason)
		for _, p := range s.Places {
			name := p.Network
			if name == "" {
				name = p.Country
			}
			if p.ASOrg != "" {
				name += " (" + p.ASOrg + ")"
			}
			if len(p.Countries) > 0 {
				name += " " + strings.Join(p.Countries, "/")
			}
			hours := ""
			if p.HoursActive > 1 {
				hours = fmt.Sprintf(" over %d hours", p.HoursActive)
			}
			networks = append(networks, fmt.Sprintf("%s: %d requests%s, %s – %s", name, p.Requests, hours, finding.Stamp(p.FirstSeen), finding.Stamp(p.LastSeen)))
		}
	}
	l.Add("New networks", strings.Join(networks, "\n"))
	return l
}

// LabelLeakSignals is the label of a leak finding that names its signals (LeakSignal.Kind), in
// the order of its evidence, joined by commas: "new_network,fanout".
const LabelLeakSignals = "signals"

// labels are what selectors match of a leak finding: its signals.
func (e LeakEvidence) labels() map[string]string {
	kinds := make([]string, len(e.Signals))
	for i, s := range e.Signals {
		kinds[i] = s.Kind
	}
	return map[string]string{LabelLeakSignals: strings.Join(kinds, ",")}
}
