package detect

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// The leak detector's files: leak.go, the detector and the order of its reads; leak_read.go, its SQL
// and the reads that run it; leak_judge.go, the judgement of what was read (no I/O); leak_scope.go,
// the scope-probing signal; leak_evidence.go, what a finding shows; leak_geo.go, the countries'
// centroids. The IPHours job (ip_hours.go) keeps the hourly counts its fan-out baseline reads.

// Leak finds keys used the way a leaked key is: from a network or country the key first used within
// new_for and never in its baseline (in a burst, or persisting over hours), from far more addresses
// than its own hourly baseline, a revoked key tried from a new network, a hop between two countries
// too far apart for the time between (between any two for a key whose history shows one place at a
// time), or forbidden requests to routes outside the key's scopes (scope probing, leak_scope.go). Each signal adds its configured
// score; a key whose sum reaches the warning score is one finding. A signal scores once per key
// however many networks, countries or routes show it; the evidence lists them all.
type Leak struct {
	conn driver.Conn
	// models loads the rotation model (shared with the other detectors by All).
	models   *rotation.Models
	cfg      config.Leak
	rules    []config.RouteScopeRule // detect.leak.route_scopes, most specific first
	rulesErr error
}

// NewLeak returns the detector.
func NewLeak(conn driver.Conn, cfg config.Leak) *Leak {
	rules, err := cfg.RouteScopeRules()
	return &Leak{conn: conn, models: rotation.NewModels(conn), cfg: cfg, rules: rules, rulesErr: err}
}

// Name is the detector's name in findings, metrics and config.
func (d *Leak) Name() string { return "leak" }

const (
	// leakBaselineMinRequests: a key (with what it inherits) that made fewer requests in its
	// baseline has nothing to compare with and gets no new-network or new-country signals.
	leakBaselineMinRequests = 100
	// leakYoungBaseline: a key first used less than this before the window (or half the baseline
	// when that is shorter) has not shown all its places yet, e.g. the new key of a rotation in its
	// overlap. It inherits the networks and countries of the key it replaces and of its client's
	// other keys, so a client using old and new key side by side stays quiet.
	leakYoungBaseline = 7 * 24 * time.Hour
	// leakFanoutMinIPs: fewer distinct addresses in an hour never make a fan-out signal.
	leakFanoutMinIPs = 20
	// leakFanoutMinHours and leakFanoutSeasonalHours: a key needs this many baseline hours with
	// traffic for a fan-out baseline at all; with at least leakFanoutSeasonalHours of them at the
	// judged hour of day it is compared with those only (a business-hours key against its business
	// hours).
	leakFanoutMinHours      = 24
	leakFanoutSeasonalHours = 7
	// leakPersistMinHours: a new place that did not carry min_requests within the window counts
	// when its requests since first seen do and it was active in at least this many distinct hours:
	// a slow leak at a few requests an hour shows within a working morning, while a one-off (a
	// developer's test call, a misrouted retry burst) stays within an hour or two.
	leakPersistMinHours = 3
	// leakRoutineNewPlaces: a key that took up at least this many networks (or countries) during
	// its baseline, after its first day, picks up new ones routinely (a consumer app's roaming
	// users): persistence does not carry a new place of that kind for it, only a burst in the window.
	leakRoutineNewPlaces = 5
	// leakMaxTravelKMH is faster than any trip between two countries' users; leakMinTravelKM ignores
	// neighbours, whose centroids are closer than IP geolocation is accurate.
	leakMaxTravelKMH = 1000
	leakMinTravelKM  = 500
	// leakTravelLookback: a hop's departure may lie this far before the window (its arrival is in
	// the window), so a hop across the window's start is judged, while the read stays a couple of
	// hours of hourly rows of the keys used from two countries.
	leakTravelLookback = time.Hour
	// leakTravelMaxCallers: a key with more callers (address and user agent) than this in the
	// travel range is a fleet or a user base, whose hops between countries are many users, not one
	// traveller (its new countries are the new-country signal's); its caller rows are not read.
	leakTravelMaxCallers = 500
	// A key's history (its baseline before the horizon, hour by hour) shows one place at a time
	// when it has at least leakTravelMinHistoryHours hours with traffic, at most one in
	// leakTravelConcurrentRatio of them with two countries at once (geolocation noise), at most
	// leakTravelMaxUAFamilies user-agent families (a person's CLI and browser; two people or a
	// fleet show more) and at most leakTravelMaxNetworks networks (home, office, phone). Such a key
	// cannot hop between two countries it knows faster than travel allows; a key that runs in both
	// at once (multi-region, failover) can.
	leakTravelMinHistoryHours = 24
	// leakTravelSwitchWithin: a change of country between two hours of history this close (hourly
	// rows) is a hop the key has made before (a VPN switched on and off, say): the same hop in the
	// window is nothing new for it.
	leakTravelSwitchWithin    = 3 * time.Hour
	leakTravelConcurrentRatio = 50
	leakTravelMaxUAFamilies   = 2
	leakTravelMaxNetworks     = 10
	// leakBaselineNetworksShown caps the baseline networks listed in evidence (busiest first).
	leakBaselineNetworksShown = 20
)

// The signal kinds, as they appear in evidence.
const (
	leakSignalNewNetwork        = "new_network"
	leakSignalNewCountry        = "new_country"
	leakSignalRevokedNewNetwork = "revoked_new_network"
	leakSignalFanout            = "fanout"
	leakSignalImpossibleTravel  = "impossible_travel"
)

// Detect judges every key used in the window: it reads what the keys did (leak_read.go), then judges
// each from what it read (leak_judge.go). It only reads.
func (d *Leak) Detect(ctx context.Context, now time.Time) ([]finding.Finding, error) {
	if d.rulesErr != nil {
		return nil, d.rulesErr
	}
	now = now.UTC()
	r := &leakRun{cfg: d.cfg, now: now, windowStart: now.Add(-time.Duration(d.cfg.Window))}
	r.baseStart = r.windowStart.Add(-time.Duration(d.cfg.Baseline))
	r.newStart = earlier(now.Add(-time.Duration(d.cfg.NewFor)), r.windowStart)

	newPlaceKeys, err := queryStrings(ctx, d.conn, leakSelectNewPlaceKeys,
		r.newStart.UnixMilli(), now.UnixMilli(), r.newStart.UnixMilli(), now.UnixMilli(), r.windowStart.UnixMilli(),
		r.baseStart.UnixMilli(), r.newStart.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("find keys used in the window from places new since %s: %w", r.newStart.Format(time.RFC3339), err)
	}
	if r.probes, err = d.scopeProbes(ctx, r); err != nil {
		return nil, err
	}
	if err := d.readTravel(ctx, r); err != nil {
		return nil, err
	}
	// With the fan-out score below the warning score, fan-out alone cannot fire: only keys with a
	// new place, a hop between countries or scope probing need its (costlier) baseline then.
	var only []string
	if d.cfg.ScoreFanout < d.cfg.WarningScore {
		only = append([]string{}, newPlaceKeys...) // not nil: none at all when there are none
		for k := range r.probes {
			only = append(only, k)
		}
		for k := range r.hops {
			only = append(only, k)
		}
	}
	hours, err := d.readJudgedHours(ctx, now, only)
	if err != nil {
		return nil, err
	}
	if len(hours) > 0 {
		keys := slices.Sorted(maps.Keys(hours))
		lastComplete := now.Truncate(time.Hour).Add(-time.Hour)
		base, err := d.ipBaselines(ctx, keys, r.baseStart, lastComplete)
		if err != nil {
			return nil, err
		}
		r.fanout = leakFanouts(hours, base, d.cfg.FanoutMinZ)
	}
	keys := slices.Clone(newPlaceKeys)
	for k := range r.fanout {
		keys = append(keys, k)
	}
	for k := range r.probes {
		keys = append(keys, k)
	}
	for k := range r.hops {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)

	if r.model == nil {
		if r.model, err = d.models.Load(ctx); err != nil {
			return nil, err
		}
	}
	if err := d.readClients(ctx, r, keys); err != nil {
		return nil, err
	}
	r.places = map[string][]leakUse{}
	if err := d.readPlaces(ctx, r, keys); err != nil {
		return nil, err
	}
	// Relatives are read only for the keys that inherit from them.
	var inherit []string
	for _, k := range keys {
		if _, thin := r.ownBaseline(k); thin {
			for _, rel := range r.relatives(k) {
				if _, found := slices.BinarySearch(keys, rel); !found {
					inherit = append(inherit, rel)
				}
			}
		}
	}
	if len(inherit) > 0 {
		slices.Sort(inherit)
		if err := d.readPlaces(ctx, r, slices.Compact(inherit)); err != nil {
			return nil, err
		}
	}
	if err := d.readActivity(ctx, r, keys); err != nil {
		return nil, err
	}
	if err := d.readSamples(ctx, r, keys); err != nil {
		return nil, err
	}
	if err := d.readWindowRequests(ctx, r, keys); err != nil {
		return nil, err
	}

	var findings []finding.Finding
	for _, k := range keys {
		if f, ok := r.judge(d.Name(), k); ok {
			findings = append(findings, f)
		}
	}
	return findings, nil
}
