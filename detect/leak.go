package detect

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// Leak finds keys used the way a leaked key is: from a network or country the key never used in its
// baseline, from far more addresses than its own hourly baseline, a revoked key tried from a new
// network, use from two countries too far apart for the time between, or forbidden requests to
// routes outside the key's scopes (scope probing, leak_scope.go). Each signal adds its configured
// score; a key whose sum reaches the warning score is one finding. A signal scores once per key
// however many networks, countries or routes show it; the evidence lists them all.
type Leak struct {
	conn     driver.Conn
	cfg      config.Leak
	rules    []config.RouteScopeRule // detect.leak.route_scopes, most specific first
	rulesErr error
}

// NewLeak returns the detector.
func NewLeak(conn driver.Conn, cfg config.Leak) *Leak {
	rules, err := cfg.RouteScopeRules()
	return &Leak{conn: conn, cfg: cfg, rules: rules, rulesErr: err}
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
	// leakMaxTravelKMH is faster than any trip between two countries' users; leakMinTravelKM ignores
	// neighbours, whose centroids are closer than IP geolocation is accurate.
	leakMaxTravelKMH = 1000
	leakMinTravelKM  = 500
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

// leakSelectNewPlaceKeys finds the keys that used, in the window, a (network, country) they had not
// used in the baseline: the only keys that can show a new network, a new country, a revoked key's
// new network or impossible travel (which needs a new country). A day's first_seen is its earliest
// event, so "first_seen on the window's day(s) is in the window" is exact although rows are daily;
// only those few keys are then looked up in the baseline's earlier days (through the primary key;
// a key-level IN prunes there, a tuple-level one does not), so the cost follows the window, not
// the baseline. Arguments: window start, now, window start, now, baseline start, window start.
const leakSelectNewPlaceKeys = `
WITH recent AS
(
    SELECT key_id, network, country
    FROM key_networks_1d
    WHERE day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND day <= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
    GROUP BY key_id, network, country
    HAVING min(first_seen) >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND min(first_seen) < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
)
SELECT DISTINCT key_id
FROM recent
WHERE (key_id, network, country) NOT IN
(
    SELECT key_id, network, country
    FROM key_networks_1d
    WHERE key_id IN (SELECT key_id FROM recent) AND day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND day < toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
)`

// leakSelectPlaces reads every (network, country) of the given keys over the baseline and the
// window: first and last seen, requests (all, and those of whole days before the window's first day, which
// are baseline traffic for sure) and failures. A place first seen in the window has all its
// requests in the window. Arguments: window start, keys, baseline start, now.
const leakSelectPlaces = `
SELECT
    key_id, network, country, anyLast(asn), anyLast(as_org),
    min(first_seen), max(last_seen), sum(requests), sum(failures),
    sumIf(requests, day < toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')))
FROM key_networks_1d
WHERE key_id IN ? AND day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND day <= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY key_id, network, country`

// leakSelectSamples reads sample addresses and user agents of the given keys' places on the
// window's day(s), which hold every event of a place first seen in the window. IPv4 addresses are
// shown without their ::ffff: prefix. Arguments: keys, window start, now.
const leakSelectSamples = `
SELECT
    key_id, network, country,
    arrayMap(ip -> replaceRegexpOne(IPv6NumToString(ip), '^::ffff:', ''), groupUniqArrayMerge(5)(sample_ips)),
    groupUniqArrayMerge(5)(sample_uas)
FROM key_networks_1d
WHERE key_id IN ? AND day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND day <= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY key_id, network, country`

// leakSelectClients reads the client of the given keys and every key of those clients (for
// inheritance). key_usage holds one row per key. Arguments: keys, keys.
const leakSelectClients = `
SELECT key_id, anyLast(client_id) AS client
FROM key_usage
GROUP BY key_id
HAVING key_id IN ? OR (client != '' AND client IN (SELECT anyLast(client_id) FROM key_usage WHERE key_id IN ? GROUP BY key_id))`

// leakSelectWindowRequests reads each key's requests in the window, for shares. minute is a
// DateTime, compared with the window's start and now at the whole second: a run in the first
// second of a minute does not count that minute, and (with a window of whole minutes) counts the
// one its window starts in. Arguments: keys, window start, now.
const leakSelectWindowRequests = `
SELECT key_id, sum(requests)
FROM auth_events_1m
WHERE key_id IN ? AND minute >= toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND minute < toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY key_id`

// Fan-out: key_ips_1h holds per key and hour a distinct-address state. The IPHours job finalizes
// completed hours into key_ip_hours (plain counts), so that a baseline is a read of numbers, not 720
// state merges per key; the detector reads the hours the job has not finalized yet from key_ips_1h.
// Events that arrive after their hour was finalized are missing from the baseline only.
const (
	// leakSelectLastIPHour is answered from part metadata (min/max of the partition key's column),
	// without reading the table; the caller ignores anything before the baseline.
	leakSelectLastIPHour = `SELECT max(hour) FROM key_ip_hours`
	// leakSelectJudgedIPHours reads the distinct addresses of the last complete hour and the current
	// one, for keys with enough of them. Arguments: last complete hour, current hour (whole hours),
	// minimum.
	leakSelectJudgedIPHours = `
SELECT key_id, hour, uniqMerge(distinct_ips) AS ips
FROM key_ips_1h
WHERE hour >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND hour <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
GROUP BY key_id, hour
HAVING ips >= ?`
	// leakSelectIPBaseline reads the given keys' hourly distinct-address counts over the baseline, by
	// hour of day: the finalized hours from key_ip_hours, the later ones (from the first hour not
	// finalized) from key_ips_1h. An hour finalized twice (two replicas at once) counts twice until
	// the table merges it away; the median does not notice, and not deduplicating halves the query's
	// cost. Arguments: keys, baseline start (hour is a DateTime: compared at the whole second), first
	// hour not finalized, keys, baseline start, first hour not finalized, end (exclusive, a whole
	// hour), end.
	leakSelectIPBaseline = `
SELECT key_id, toHour(hour) AS hod, groupArray(distinct_ips)
FROM
(
    SELECT key_id, hour, distinct_ips
    FROM key_ip_hours
    WHERE key_id IN ? AND hour >= toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
    UNION ALL
    SELECT key_id, hour, toUInt32(uniqMerge(distinct_ips)) AS distinct_ips
    FROM key_ips_1h
    WHERE key_id IN ? AND hour >= toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND hour >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
        AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
    GROUP BY key_id, hour
)
WHERE hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
GROUP BY key_id, hod`
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
	// Scope is the evidence of scope_probing.
	Scope *LeakScopeProbe `json:"scope_probe,omitempty"`
}

// LeakPlace is a network or a country the key used in the window but not in its baseline.
type LeakPlace struct {
	Network   string   `json:"network,omitempty"`
	ASN       uint32   `json:"asn,omitempty"`
	ASOrg     string   `json:"as_org,omitempty"`
	Country   string   `json:"country,omitempty"`
	Countries []string `json:"countries,omitempty"` // of a network
	Networks  []string `json:"networks,omitempty"`  // of a country
	Requests  uint64   `json:"requests"`
	Failures  uint64   `json:"failures"`
	// Share is Requests over all the key's requests in the window (0..1).
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

// leakUse is one key's use of one (network, country) over the baseline and the window.
type leakUse struct {
	network, country, asOrg string
	asn                     uint32
	first, last             time.Time
	requests, failures      uint64
	beforeWindowDay         uint64 // requests on whole days before the window's first day
	sampleIPs, sampleUAs    []string
}

// leakRun is one Detect call's shared facts.
type leakRun struct {
	cfg                         config.Leak
	now, windowStart, baseStart time.Time
	model                       *rotation.Model
	places                      map[string][]leakUse
	clients                     map[string]string
	clientKeys                  map[string][]string
	windowRequests              map[string]uint64
	fanout                      map[string]*LeakFanout
	probes                      map[string]*LeakScopeProbe
}

// Detect judges every key used in the window.
func (d *Leak) Detect(ctx context.Context, now time.Time) ([]finding.Finding, error) {
	if d.rulesErr != nil {
		return nil, d.rulesErr
	}
	now = now.UTC()
	r := &leakRun{cfg: d.cfg, now: now, windowStart: now.Add(-time.Duration(d.cfg.Window))}
	r.baseStart = r.windowStart.Add(-time.Duration(d.cfg.Baseline))

	newPlaceKeys, err := leakQueryStrings(ctx, d.conn, leakSelectNewPlaceKeys,
		r.windowStart.UnixMilli(), now.UnixMilli(), r.windowStart.UnixMilli(), now.UnixMilli(), r.baseStart.UnixMilli(), r.windowStart.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("find keys used from new places since %s: %w", r.windowStart.Format(time.RFC3339), err)
	}
	if r.probes, err = d.scopeProbes(ctx, r); err != nil {
		return nil, err
	}
	// With the fan-out score below the warning score, fan-out alone cannot fire: only keys with a
	// new place or scope probing need its (costlier) baseline then.
	var only []string
	if d.cfg.ScoreFanout < d.cfg.WarningScore {
		only = append([]string{}, newPlaceKeys...) // not nil: none at all when there are none
		for k := range r.probes {
			only = append(only, k)
		}
	}
	if r.fanout, err = d.fanouts(ctx, r, only); err != nil {
		return nil, err
	}
	keys := slices.Clone(newPlaceKeys)
	for k := range r.fanout {
		keys = append(keys, k)
	}
	for k := range r.probes {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)

	if r.model == nil {
		if r.model, err = rotation.Load(ctx, d.conn); err != nil {
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

// relatives are the keys whose baseline key may inherit: the key its rotation replaced and its
// client's other keys.
func (r *leakRun) relatives(key string) []string {
	var out []string
	if k := r.model.Key(key); k != nil && k.Predecessor != nil && k.Predecessor.OldKeyID != key {
		out = append(out, k.Predecessor.OldKeyID)
	}
	if c := r.clients[key]; c != "" {
		for _, o := range r.clientKeys[c] {
			if o != key {
				out = append(out, o)
			}
		}
	}
	return out
}

func (d *Leak) readClients(ctx context.Context, r *leakRun, keys []string) error {
	rows, err := d.conn.Query(ctx, leakSelectClients, keys, keys)
	if err != nil {
		return fmt.Errorf("read clients of %d keys from key_usage: %w", len(keys), err)
	}
	defer rows.Close()
	r.clients, r.clientKeys = map[string]string{}, map[string][]string{}
	for rows.Next() {
		var key, client string
		if err := rows.Scan(&key, &client); err != nil {
			return fmt.Errorf("read clients from key_usage: %w", err)
		}
		r.clients[key] = client
		if client != "" {
			r.clientKeys[client] = append(r.clientKeys[client], key)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read clients from key_usage: %w", err)
	}
	for _, ks := range r.clientKeys {
		slices.Sort(ks)
	}
	return nil
}

func (d *Leak) readPlaces(ctx context.Context, r *leakRun, keys []string) error {
	rows, err := d.conn.Query(ctx, leakSelectPlaces, r.windowStart.UnixMilli(), keys, r.baseStart.UnixMilli(), r.now.UnixMilli())
	if err != nil {
		return fmt.Errorf("read networks of %d keys from key_networks_1d: %w", len(keys), err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var p leakUse
		if err := rows.Scan(&key, &p.network, &p.country, &p.asn, &p.asOrg, &p.first, &p.last,
			&p.requests, &p.failures, &p.beforeWindowDay); err != nil {
			return fmt.Errorf("read networks from key_networks_1d: %w", err)
		}
		p.first, p.last = p.first.UTC(), p.last.UTC()
		r.places[key] = append(r.places[key], p)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read networks from key_networks_1d: %w", err)
	}
	return nil
}

// readSamples fills in the sample addresses and user agents of the keys' places used in the window.
func (d *Leak) readSamples(ctx context.Context, r *leakRun, keys []string) error {
	rows, err := d.conn.Query(ctx, leakSelectSamples, keys, r.windowStart.UnixMilli(), r.now.UnixMilli())
	if err != nil {
		return fmt.Errorf("read samples of %d keys from key_networks_1d: %w", len(keys), err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, network, country string
		var ips, uas []string
		if err := rows.Scan(&key, &network, &country, &ips, &uas); err != nil {
			return fmt.Errorf("read samples from key_networks_1d: %w", err)
		}
		for i, p := range r.places[key] {
			if p.network == network && p.country == country {
				slices.Sort(ips)
				slices.Sort(uas)
				r.places[key][i].sampleIPs, r.places[key][i].sampleUAs = ips, uas
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read samples from key_networks_1d: %w", err)
	}
	return nil
}

func (d *Leak) readWindowRequests(ctx context.Context, r *leakRun, keys []string) error {
	rows, err := d.conn.Query(ctx, leakSelectWindowRequests, keys, r.windowStart.UnixMilli(), r.now.UnixMilli())
	if err != nil {
		return fmt.Errorf("read window requests of %d keys from auth_events_1m: %w", len(keys), err)
	}
	defer rows.Close()
	r.windowRequests = map[string]uint64{}
	for rows.Next() {
		var key string
		var n uint64
		if err := rows.Scan(&key, &n); err != nil {
			return fmt.Errorf("read window requests from auth_events_1m: %w", err)
		}
		r.windowRequests[key] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read window requests from auth_events_1m: %w", err)
	}
	return nil
}

// fanouts returns the keys (of only, when it is not nil) whose
// last complete hour or current hour has distinct addresses at least FanoutMinZ robust z-scores
// above their baseline. The current hour is still filling, so its count only undercounts: judging
// it as well catches an explosion within minutes without ever being louder than the full hour will
// be.
func (d *Leak) fanouts(ctx context.Context, r *leakRun, only []string) (map[string]*LeakFanout, error) {
	current := r.now.Truncate(time.Hour)
	last := current.Add(-time.Hour)
	type judged struct {
		hour time.Time
		ips  uint64
	}
	rows, err := d.conn.Query(ctx, leakSelectJudgedIPHours, last.UnixMilli(), current.UnixMilli(), uint64(leakFanoutMinIPs))
	if err != nil {
		return nil, fmt.Errorf("read distinct addresses of hours %s and %s from key_ips_1h: %w",
			last.Format(time.RFC3339), current.Format(time.RFC3339), err)
	}
	defer rows.Close()
	hours := map[string][]judged{}
	for rows.Next() {
		var key string
		var j judged
		if err := rows.Scan(&key, &j.hour, &j.ips); err != nil {
			return nil, fmt.Errorf("read distinct addresses from key_ips_1h: %w", err)
		}
		if only != nil && !slices.Contains(only, key) {
			continue
		}
		j.hour = j.hour.UTC()
		hours[key] = append(hours[key], j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read distinct addresses from key_ips_1h: %w", err)
	}
	if len(hours) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, len(hours))
	for k := range hours {
		keys = append(keys, k)
	}
	base, err := d.ipBaselines(ctx, keys, r.baseStart, last)
	if err != nil {
		return nil, err
	}
	out := map[string]*LeakFanout{}
	for key, js := range hours {
		for _, j := range js {
			f := leakFanoutOf(base[key], j.hour, j.ips)
			if f != nil && f.Z >= r.cfg.FanoutMinZ && (out[key] == nil || f.Z > out[key].Z) {
				out[key] = f
			}
		}
	}
	return out, nil
}

// ipBaselines returns each key's baseline hourly distinct-address counts by hour of day, for the
// hours from from to to (exclusive).
func (d *Leak) ipBaselines(ctx context.Context, keys []string, from, to time.Time) (map[string]map[int][]float64, error) {
	var recorded time.Time
	if err := d.conn.QueryRow(ctx, leakSelectLastIPHour).Scan(&recorded); err != nil {
		return nil, fmt.Errorf("read last finalized hour from key_ip_hours: %w", err)
	}
	unfinalized := recorded.UTC().Add(time.Hour)
	rows, err := d.conn.Query(ctx, leakSelectIPBaseline, keys, from.UnixMilli(), unfinalized.UnixMilli(),
		keys, from.UnixMilli(), unfinalized.UnixMilli(), to.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read hourly distinct addresses of %d keys from %s to %s: %w", len(keys),
			from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	defer rows.Close()
	out := map[string]map[int][]float64{}
	for rows.Next() {
		var key string
		var hod uint8
		var ips []uint32
		if err := rows.Scan(&key, &hod, &ips); err != nil {
			return nil, fmt.Errorf("read hourly distinct addresses from key_ip_hours: %w", err)
		}
		if out[key] == nil {
			out[key] = map[int][]float64{}
		}
		for _, n := range ips {
			out[key][int(hod)] = append(out[key][int(hod)], float64(n))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read hourly distinct addresses from key_ip_hours: %w", err)
	}
	return out, nil
}

// leakFanoutOf compares an hour's distinct addresses with the baseline (by hour of day); nil when the
// baseline is too short to judge.
func leakFanoutOf(byHour map[int][]float64, hour time.Time, ips uint64) *LeakFanout {
	sample, seasonal := byHour[hour.Hour()], true
	if len(sample) < leakFanoutSeasonalHours {
		sample, seasonal = nil, false
		for _, s := range byHour {
			sample = append(sample, s...)
		}
	}
	if len(sample) < leakFanoutMinHours && !seasonal {
		return nil
	}
	med := leakMedian(sample)
	dev := make([]float64, len(sample))
	for i, v := range sample {
		dev[i] = math.Abs(v - med)
	}
	mad := leakMedian(dev)
	scale := max(1.4826*mad, math.Sqrt(med), 1)
	return &LeakFanout{Hour: hour, DistinctIPs: ips, BaselineMedian: med, BaselineMAD: mad,
		Z: leakRound2((float64(ips) - med) / scale), BaselineHours: len(sample), Seasonal: seasonal}
}

func leakMedian(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func leakRound2(x float64) float64 { return math.Round(x*100) / 100 }

// leakBaselineSet is the networks and countries a key is judged against.
type leakBaselineSet struct {
	networks  map[string]*LeakKnownNetwork
	countries map[string]bool
	requests  uint64
	inherited []string
}

func (b *leakBaselineSet) add(places []leakUse, windowStart time.Time) {
	for _, p := range places {
		if !p.first.Before(windowStart) {
			continue
		}
		n := b.networks[p.network]
		if n == nil {
			n = &LeakKnownNetwork{Network: p.network, ASOrg: p.asOrg}
			b.networks[p.network] = n
		}
		n.Requests += p.beforeWindowDay
		if p.country != "" {
			b.countries[p.country] = true
		}
		b.requests += p.beforeWindowDay
	}
}

// baselineOf gathers the key's own baseline, and inherits its relatives' when it is thin or young.
func (r *leakRun) baselineOf(key string) *leakBaselineSet {
	b, thin := r.ownBaseline(key)
	if thin {
		for _, rel := range r.relatives(key) {
			if len(r.places[rel]) > 0 {
				b.add(r.places[rel], r.windowStart)
				b.inherited = append(b.inherited, rel)
			}
		}
	}
	return b
}

// ownBaseline is the key's own baseline; thin when it is too small or too young to stand alone.
func (r *leakRun) ownBaseline(key string) (b *leakBaselineSet, thin bool) {
	b = &leakBaselineSet{networks: map[string]*LeakKnownNetwork{}, countries: map[string]bool{}}
	b.add(r.places[key], r.windowStart)
	first := r.windowStart
	for _, p := range r.places[key] {
		if p.first.Before(first) {
			first = p.first
		}
	}
	young := min(leakYoungBaseline, time.Duration(r.cfg.Baseline)/2)
	return b, b.requests < leakBaselineMinRequests || r.windowStart.Sub(first) < young
}

// judge scores one key; ok is false when the score stays below the warning score.
func (r *leakRun) judge(detector, key string) (finding.Finding, bool) {
	b := r.baselineOf(key)
	total := r.windowRequests[key]
	state := rotation.Active
	client := r.clients[key]
	if k := r.model.Key(key); k != nil {
		state = k.State
		if client == "" {
			client = k.ClientID
		}
	}
	newNets, newCountries := r.newPlaces(key, b, total)
	hasBaseline := b.requests >= leakBaselineMinRequests
	minReq := uint64(r.cfg.MinRequests)
	within := "in the last " + leakDuration(time.Duration(r.cfg.Window))

	var signals []LeakSignal
	var phrases []string
	revoked := state == rotation.Revoked
	verb := "used from"
	if revoked {
		verb = "tried from"
	}
	busyNets := leakFilterPlaces(newNets, minReq)
	if revoked && len(newNets) > 0 {
		signals = append(signals, LeakSignal{Kind: leakSignalRevokedNewNetwork, Score: r.cfg.ScoreRevokedNewNetwork,
			Reason: fmt.Sprintf("revoked key used from %d network(s) it did not use in the baseline", len(newNets)), Places: newNets})
	}
	if hasBaseline && len(busyNets) > 0 {
		signals = append(signals, LeakSignal{Kind: leakSignalNewNetwork, Score: r.cfg.ScoreNewNetwork,
			Reason: fmt.Sprintf("%d network(s) not seen in the baseline carried at least %d requests each", len(busyNets), minReq), Places: busyNets})
	}
	busyCountries := leakFilterPlaces(newCountries, minReq)
	if hasBaseline && len(busyCountries) > 0 {
		signals = append(signals, LeakSignal{Kind: leakSignalNewCountry, Score: r.cfg.ScoreNewCountry,
			Reason: fmt.Sprintf("%d country(ies) not seen in the baseline carried at least %d requests each", len(busyCountries), minReq), Places: busyCountries})
	}
	switch {
	case len(busyNets) > 0 && (hasBaseline || revoked):
		phrases = append(phrases, leakNetworkPhrase(verb, busyNets, b, within))
	case revoked && len(newNets) > 0:
		phrases = append(phrases, leakNetworkPhrase(verb, newNets, b, within))
	case hasBaseline && len(busyCountries) > 0:
		c := busyCountries[0]
		phrases = append(phrases, fmt.Sprintf("%s new country %s via %s: %d requests (%s of its traffic) %s",
			verb, c.Country, strings.Join(c.Networks, ", "), c.Requests, leakPercent(c.Share), within))
	}
	if f := r.fanout[key]; f != nil {
		signals = append(signals, LeakSignal{Kind: leakSignalFanout, Score: r.cfg.ScoreFanout,
			Reason: fmt.Sprintf("%d distinct IPs in the hour from %s UTC, z %.1f against a baseline median of %g",
				f.DistinctIPs, f.Hour.Format("15:04"), f.Z, f.BaselineMedian), Fanout: f})
		phrases = append(phrases, fmt.Sprintf("%d distinct IPs in the hour from %s UTC (baseline median %g)",
			f.DistinctIPs, f.Hour.Format("15:04"), f.BaselineMedian))
	}
	if trips := r.travel(key, b); len(trips) > 0 {
		t := trips[0]
		signals = append(signals, LeakSignal{Kind: leakSignalImpossibleTravel, Score: r.cfg.ScoreImpossibleTravel,
			Reason: fmt.Sprintf("used from %s and %s, %.0f km apart, %.0f minutes apart (over %d km/h)", t.From, t.To, t.KM, t.GapMinutes, leakMaxTravelKMH),
			Travel: trips})
		phrases = append(phrases, fmt.Sprintf("impossible travel %s→%s: %.0f km in %.0f min", t.From, t.To, t.KM, t.GapMinutes))
	}
	if s, phrase, ok := r.scopeSignal(key, total, within); ok {
		signals = append(signals, s)
		phrases = append(phrases, phrase)
	}

	var score float64
	for _, s := range signals {
		score += s.Score
	}
	if score < r.cfg.WarningScore {
		return finding.Finding{}, false
	}
	f := finding.New(detector, r.now, key, client, "")
	f.Severity = finding.Warning
	if score >= r.cfg.CriticalScore {
		f.Severity = finding.Critical
	}
	// Score is the sum of the signals' configured scores: higher is more signals, more severe.
	f.Score = score
	subject := key
	if revoked {
		subject = "revoked key " + key
	}
	if client != "" {
		subject += " (" + client + ")"
	}
	f.Summary = fmt.Sprintf("%s %s (score %g)", subject, strings.Join(phrases, "; "), score)
	ev := LeakEvidence{KeyState: string(state), WindowStart: r.windowStart, WindowEnd: r.now, WindowRequests: total,
		Signals: signals, Baseline: b.evidence(r.baseStart, r.windowStart)}
	f.Evidence, f.Fields, f.Labels = ev, ev.fields(), ev.labels()
	return f, true
}

func leakNetworkPhrase(verb string, nets []LeakPlace, b *leakBaselineSet, within string) string {
	n := nets[0]
	name := n.Network
	if n.ASOrg != "" {
		name += " (" + n.ASOrg + ")"
	}
	where := ""
	for i, c := range n.Countries {
		sep := ", "
		if i == 0 {
			sep = " in "
		}
		if !b.countries[c] {
			c = "new country " + c
		}
		where += sep + c
	}
	more := ""
	if len(nets) > 1 {
		more = fmt.Sprintf(" (and %d more new networks)", len(nets)-1)
	}
	return fmt.Sprintf("%s new network %s%s: %d requests (%s of its traffic) %s%s", verb, name, where, n.Requests, leakPercent(n.Share), within, more)
}

// newPlaces returns the key's networks and countries used in the window that b does not hold, with
// their window traffic (exact: a place first seen in the window has all its requests there),
// busiest first.
func (r *leakRun) newPlaces(key string, b *leakBaselineSet, total uint64) (nets, countries []LeakPlace) {
	byNet, byCountry := map[string]*LeakPlace{}, map[string]*LeakPlace{}
	add := func(m map[string]*LeakPlace, name string, p leakUse, fill func(*LeakPlace)) {
		lp := m[name]
		if lp == nil {
			lp = &LeakPlace{FirstSeen: p.first, LastSeen: p.last}
			fill(lp)
			m[name] = lp
		}
		lp.Requests += p.requests
		lp.Failures += p.failures
		lp.FirstSeen = leakMinTime(lp.FirstSeen, p.first)
		lp.LastSeen = leakMaxTime(lp.LastSeen, p.last)
		lp.SampleIPs = leakMergeSamples(lp.SampleIPs, p.sampleIPs)
		lp.SampleUserAgents = leakMergeSamples(lp.SampleUserAgents, p.sampleUAs)
	}
	for _, p := range r.places[key] {
		if p.first.Before(r.windowStart) {
			continue
		}
		if b.networks[p.network] == nil {
			add(byNet, p.network, p, func(lp *LeakPlace) { lp.Network, lp.ASN, lp.ASOrg = p.network, p.asn, p.asOrg })
			if p.country != "" && !slices.Contains(byNet[p.network].Countries, p.country) {
				byNet[p.network].Countries = append(byNet[p.network].Countries, p.country)
			}
		}
		if p.country != "" && !b.countries[p.country] {
			add(byCountry, p.country, p, func(lp *LeakPlace) { lp.Country = p.country })
			if !slices.Contains(byCountry[p.country].Networks, p.network) {
				byCountry[p.country].Networks = append(byCountry[p.country].Networks, p.network)
			}
		}
	}
	return leakSortedPlaces(byNet, total), leakSortedPlaces(byCountry, total)
}

func leakSortedPlaces(m map[string]*LeakPlace, total uint64) []LeakPlace {
	out := make([]LeakPlace, 0, len(m))
	for _, p := range m {
		if total > 0 {
			p.Share = leakRound4(min(1, float64(p.Requests)/float64(total)))
		}
		slices.Sort(p.Countries)
		slices.Sort(p.Networks)
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b LeakPlace) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Network, b.Network), cmp.Compare(a.Country, b.Country))
	})
	return out
}

func leakFilterPlaces(ps []LeakPlace, minRequests uint64) []LeakPlace {
	var out []LeakPlace
	for _, p := range ps {
		if p.Requests >= minRequests {
			out = append(out, p)
		}
	}
	return out
}

// leakCountryUse is a key's use of one country as the daily rollup shows it: its last event
// (exact), and for a country new in the window its first event and requests (exact too); for a
// country of the baseline, requests are those of the window's day(s).
type leakCountryUse struct {
	country     string
	first, last time.Time // first is zero for a baseline country
	requests    uint64
}

// travel returns the hand-overs between countries faster than leakMaxTravelKMH, fastest first: the
// key's last event in one country followed, with nothing in between from it, by its first event in
// another too soon for the distance. Use from two countries at the same time is two users, not
// travel (the new-country signal covers it). A country must carry MinRequests, and at least one of
// the pair must be new (a key that used both before is a multi-region deployment failing over); the
// arrival country is the new one unless both are, because the rollup pins down a country's first
// event in the window only when it is new.
func (r *leakRun) travel(key string, b *leakBaselineSet) []LeakTravel {
	uses := map[string]*leakCountryUse{}
	for _, p := range r.places[key] {
		if p.country == "" || p.last.Before(r.windowStart) {
			continue
		}
		u := uses[p.country]
		if u == nil {
			u = &leakCountryUse{country: p.country}
			uses[p.country] = u
		}
		u.last = leakMaxTime(u.last, p.last)
		switch {
		case b.countries[p.country]:
			u.requests += p.requests - p.beforeWindowDay
		case !p.first.Before(r.windowStart):
			u.requests += p.requests
			if u.first.IsZero() || p.first.Before(u.first) {
				u.first = p.first
			}
		}
	}
	var out []LeakTravel
	for _, from := range uses {
		for _, to := range uses {
			if from == to || to.first.IsZero() || !from.last.Before(to.first) ||
				from.requests < uint64(r.cfg.MinRequests) || to.requests < uint64(r.cfg.MinRequests) {
				continue
			}
			km, ok := leakDistanceKM(from.country, to.country)
			gap := to.first.Sub(from.last)
			if !ok || km < leakMinTravelKM || gap.Hours()*leakMaxTravelKMH >= km {
				continue
			}
			out = append(out, LeakTravel{From: from.country, To: to.country, FromSeen: from.last, ToSeen: to.first,
				KM: math.Round(km), GapMinutes: leakRound2(gap.Minutes()), KMPerHour: math.Round(km / gap.Hours())})
		}
	}
	slices.SortFunc(out, func(x, y LeakTravel) int {
		return cmp.Or(cmp.Compare(y.KMPerHour, x.KMPerHour), cmp.Compare(x.From, y.From), cmp.Compare(x.To, y.To))
	})
	return out
}

func (b *leakBaselineSet) evidence(start, end time.Time) LeakBaseline {
	out := LeakBaseline{Start: start, End: end, Requests: b.requests, NetworksTotal: len(b.networks),
		Countries: make([]string, 0, len(b.countries)), Networks: []LeakKnownNetwork{}, InheritedFrom: b.inherited}
	for _, n := range b.networks {
		out.Networks = append(out.Networks, *n)
	}
	slices.SortFunc(out.Networks, func(x, y LeakKnownNetwork) int {
		return cmp.Or(cmp.Compare(y.Requests, x.Requests), cmp.Compare(x.Network, y.Network))
	})
	if len(out.Networks) > leakBaselineNetworksShown {
		out.Networks = out.Networks[:leakBaselineNetworksShown]
	}
	for c := range b.countries {
		out.Countries = append(out.Countries, c)
	}
	slices.Sort(out.Countries)
	return out
}

func leakMergeSamples(have, more []string) []string {
	for _, s := range more {
		if len(have) >= 5 {
			break
		}
		if !slices.Contains(have, s) {
			have = append(have, s)
		}
	}
	return have
}

func leakMinTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func leakMaxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func leakRound4(x float64) float64 { return math.Round(x*10000) / 10000 }

func leakPercent(share float64) string {
	if share >= 0.1 {
		return fmt.Sprintf("%.0f%%", share*100)
	}
	return fmt.Sprintf("%.1f%%", share*100)
}

// leakDuration writes 1h as "hour", 30m as "30m", 1h30m as "1h30m".
func leakDuration(d time.Duration) string {
	if d == time.Hour {
		return "hour"
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// leakQueryStrings runs q and returns its single String column.
func leakQueryStrings(ctx context.Context, conn driver.Conn, q string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
