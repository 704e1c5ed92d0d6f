package detect

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// leakUse is one key's use of one (network, country) over the baseline and the window.
type leakUse struct {
	network, country, asOrg string
	asn                     uint32
	first, last             time.Time
	requests, failures      uint64
	beforeWindowDay         uint64 // requests on whole days before the window's first day
	sampleIPs, sampleUAs    []string
}

// leakPlaceID is a (network, country) of a key.
type leakPlaceID struct{ network, country string }

// leakActivity is a key's use of one (network, country) since the horizon's start, from the hourly
// callers: the hours it was active, and its requests in the hours the window touches.
type leakActivity struct {
	hours          []time.Time
	windowRequests uint64
}

// leakSpan is one hourly caller row of a key in one country: its first and last event (exact) and
// requests.
type leakSpan struct {
	country     string
	first, last time.Time
	requests    uint64
}

// leakRun is what one Detect call read, and the configuration it judges by: judge is a function of
// it alone (no I/O), so a test builds one by hand. Detect fills it through the reads of leak_read.go.
// newStart is the horizon's start: places first seen since are new, and out of every baseline.
type leakRun struct {
	cfg                                   config.Leak
	now, windowStart, baseStart, newStart time.Time
	model                                 *rotation.Model
	places                                map[string][]leakUse
	activity                              map[string]map[leakPlaceID]leakActivity
	clients                               map[string]string
	clientKeys                            map[string][]string
	windowRequests                        map[string]uint64
	fanout                                map[string]*LeakFanout
	probes                                map[string]*LeakScopeProbe
	hops                                  map[string][]LeakTravel // leakHops of the keys used from two countries
	history                               map[string]LeakHistory  // of the keys with hops
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

// leakHour is a key's distinct addresses in one hour.
type leakHour struct {
	hour time.Time
	ips  uint64
}

// leakFanouts returns the keys whose last complete hour or current hour has distinct addresses at
// least minZ robust z-scores above their baseline (base: each key's hourly counts by hour of day),
// with the higher of the two. The current hour is still filling, so its count only undercounts:
// judging it as well catches an explosion within minutes without ever being louder than the full
// hour will be.
func leakFanouts(hours map[string][]leakHour, base map[string]map[int][]float64, minZ float64) map[string]*LeakFanout {
	out := map[string]*LeakFanout{}
	for key, hs := range hours {
		for _, h := range hs {
			f := leakFanoutOf(base[key], h.hour, h.ips)
			if f != nil && f.Z >= minZ && (out[key] == nil || f.Z > out[key].Z) {
				out[key] = f
			}
		}
	}
	return out
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

// add adds the places first seen before cutoff (the horizon's start): a place stays out of the
// baseline, its own key's or one it lends, while it is new.
func (b *leakBaselineSet) add(places []leakUse, cutoff time.Time) {
	for _, p := range places {
		if !p.first.Before(cutoff) {
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
				b.add(r.places[rel], r.newStart)
				b.inherited = append(b.inherited, rel)
			}
		}
	}
	return b
}

// ownBaseline is the key's own baseline; thin when it is too small or too young to stand alone.
func (r *leakRun) ownBaseline(key string) (b *leakBaselineSet, thin bool) {
	b = &leakBaselineSet{networks: map[string]*LeakKnownNetwork{}, countries: map[string]bool{}}
	b.add(r.places[key], r.newStart)
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
	routineNets, routineCountries := r.routine(key)

	var signals []LeakSignal
	var phrases []string
	revoked := state == rotation.Revoked
	verb := "used from"
	if revoked {
		verb = "tried from"
	}
	busyNets := r.countingPlaces(newNets, routineNets)
	if revoked && len(newNets) > 0 {
		signals = append(signals, LeakSignal{Kind: leakSignalRevokedNewNetwork, Score: r.cfg.ScoreRevokedNewNetwork,
			Reason: fmt.Sprintf("revoked key used from %d network(s) it did not use in the baseline", len(newNets)), Places: newNets})
	}
	if hasBaseline && len(busyNets) > 0 {
		signals = append(signals, LeakSignal{Kind: leakSignalNewNetwork, Score: r.cfg.ScoreNewNetwork,
			Reason: leakNewPlaceReason(busyNets, "network(s)", minReq, r.cfg.NewFor, within), Places: busyNets})
	}
	busyCountries := r.countingPlaces(newCountries, routineCountries)
	if hasBaseline && len(busyCountries) > 0 {
		signals = append(signals, LeakSignal{Kind: leakSignalNewCountry, Score: r.cfg.ScoreNewCountry,
			Reason: leakNewPlaceReason(busyCountries, "country(ies)", minReq, r.cfg.NewFor, within), Places: busyCountries})
	}
	switch {
	case len(busyNets) > 0 && (hasBaseline || revoked):
		phrases = append(phrases, leakNetworkPhrase(verb, busyNets, b, r.windowStart, within))
	case revoked && len(newNets) > 0:
		phrases = append(phrases, leakNetworkPhrase(verb, newNets, b, r.windowStart, within))
	case hasBaseline && len(busyCountries) > 0:
		c := busyCountries[0]
		phrases = append(phrases, fmt.Sprintf("%s new country %s via %s: %s",
			verb, c.Country, strings.Join(c.Networks, ", "), leakPlaceAmount(c, r.windowStart, within)))
	}
	if f := r.fanout[key]; f != nil {
		signals = append(signals, LeakSignal{Kind: leakSignalFanout, Score: r.cfg.ScoreFanout,
			Reason: fmt.Sprintf("%d distinct IPs in the hour from %s UTC, z %.1f against a baseline median of %g",
				f.DistinctIPs, f.Hour.Format("15:04"), f.Z, f.BaselineMedian), Fanout: f})
		phrases = append(phrases, fmt.Sprintf("%d distinct IPs in the hour from %s UTC (baseline median %g)",
			f.DistinctIPs, f.Hour.Format("15:04"), f.BaselineMedian))
	}
	if trips, hist := r.travel(key, b); len(trips) > 0 {
		t := trips[0]
		reason := fmt.Sprintf("used from %s until %s UTC and from %s from %s UTC, %.0f km apart, %.0f minutes apart (over %d km/h)",
			t.From, t.FromSeen.Format("15:04"), t.To, t.ToSeen.Format("15:04"), t.KM, t.GapMinutes, leakMaxTravelKMH)
		if t.Familiar {
			reason += fmt.Sprintf("; both countries are in its baseline, but its history shows one place at a time (%d hours, %d of them with two countries at once; user-agent families: %d, networks: %d)",
				hist.Hours, hist.HoursTwoCountries, hist.UserAgentFamilies, hist.Networks)
		}
		signals = append(signals, LeakSignal{Kind: leakSignalImpossibleTravel, Score: r.cfg.ScoreImpossibleTravel,
			Reason: reason, Travel: trips, History: hist})
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
		Signals: signals, Baseline: b.evidence(r.baseStart, r.newStart)}
	f.Evidence, f.Fields, f.Labels = ev, ev.fields(), ev.labels()
	return f, true
}

func leakNetworkPhrase(verb string, nets []LeakPlace, b *leakBaselineSet, windowStart time.Time, within string) string {
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
	return fmt.Sprintf("%s new network %s%s: %s%s", verb, name, where, leakPlaceAmount(n, windowStart, within), more)
}

// leakPlaceAmount says a new place's traffic: its requests in the window when it was first seen
// there, else its requests since first seen and over how many hours.
func leakPlaceAmount(p LeakPlace, windowStart time.Time, within string) string {
	if !p.FirstSeen.Before(windowStart) {
		return fmt.Sprintf("%d requests (%s of its traffic) %s", p.Requests, leakPercent(p.Share), within)
	}
	return fmt.Sprintf("%d requests over %d hours since %s (%s of its traffic %s)",
		p.Requests, p.HoursActive, finding.Stamp(p.FirstSeen), leakPercent(p.Share), within)
}

// leakNewPlaceReason is the reason of a new_network or new_country signal.
func leakNewPlaceReason(ps []LeakPlace, kind string, minRequests uint64, newFor config.Duration, within string) string {
	return fmt.Sprintf("%d %s first used within %s and not in the baseline carried at least %d requests %s, or since first seen over at least %d hours",
		len(ps), kind, leakDuration(time.Duration(newFor)), minRequests, within, leakPersistMinHours)
}

// countingPlaces are the new places that score: used in the window, with at least min_requests
// since first seen, and either first seen in the window (a burst: every request is in it), with
// min_requests in the hours the window touches, or, unless new places of the kind are routine for
// the key, active in at least leakPersistMinHours distinct hours (a slow leak).
func (r *leakRun) countingPlaces(ps []LeakPlace, routine bool) []LeakPlace {
	minReq := uint64(r.cfg.MinRequests)
	var out []LeakPlace
	for _, p := range ps {
		if p.Requests < minReq {
			continue
		}
		if !p.FirstSeen.Before(r.windowStart) || p.RequestsInWindow >= minReq || (!routine && p.HoursActive >= leakPersistMinHours) {
			out = append(out, p)
		}
	}
	return out
}

// routine reports whether the key took up at least leakRoutineNewPlaces networks (countries)
// during its baseline after its first day: new ones are nothing unusual for it.
func (r *leakRun) routine(key string) (networks, countries bool) {
	first := r.newStart
	netFirst, countryFirst := map[string]time.Time{}, map[string]time.Time{}
	for _, p := range r.places[key] {
		first = earlier(first, p.first)
		if t, ok := netFirst[p.network]; !ok || p.first.Before(t) {
			netFirst[p.network] = p.first
		}
		if t, ok := countryFirst[p.country]; p.country != "" && (!ok || p.first.Before(t)) {
			countryFirst[p.country] = p.first
		}
	}
	settled := first.Add(24 * time.Hour)
	count := func(m map[string]time.Time) int {
		n := 0
		for _, t := range m {
			if t.After(settled) && t.Before(r.newStart) {
				n++
			}
		}
		return n
	}
	return count(netFirst) >= leakRoutineNewPlaces, count(countryFirst) >= leakRoutineNewPlaces
}

// newPlaces returns the key's networks and countries first seen since the horizon's start and used
// in the window that b does not hold, with their traffic since first seen (exact: every request of
// a place first seen in the range read is in it), the hours they were active and their requests in
// the window (exact for a place first seen there, else those of the hours the window touches),
// busiest first.
func (r *leakRun) newPlaces(key string, b *leakBaselineSet, total uint64) (nets, countries []LeakPlace) {
	byNet, byCountry := map[string]*LeakPlace{}, map[string]*LeakPlace{}
	hours := map[*LeakPlace]map[time.Time]bool{}
	add := func(m map[string]*LeakPlace, name string, p leakUse, fill func(*LeakPlace)) {
		lp := m[name]
		if lp == nil {
			lp = &LeakPlace{FirstSeen: p.first, LastSeen: p.last}
			fill(lp)
			m[name] = lp
			hours[lp] = map[time.Time]bool{}
		}
		a := r.activity[key][leakPlaceID{p.network, p.country}]
		for _, h := range a.hours {
			hours[lp][h.UTC()] = true
		}
		if !p.first.Before(r.windowStart) {
			lp.RequestsInWindow += p.requests
		} else {
			lp.RequestsInWindow += a.windowRequests
		}
		lp.Requests += p.requests
		lp.Failures += p.failures
		lp.FirstSeen = earlier(lp.FirstSeen, p.first)
		lp.LastSeen = later(lp.LastSeen, p.last)
		lp.SampleIPs = leakMergeSamples(lp.SampleIPs, p.sampleIPs)
		lp.SampleUserAgents = leakMergeSamples(lp.SampleUserAgents, p.sampleUAs)
	}
	for _, p := range r.places[key] {
		if p.first.Before(r.newStart) || p.last.Before(r.windowStart) {
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
	for lp, hs := range hours {
		lp.HoursActive = len(hs)
	}
	return leakSortedPlaces(byNet, total), leakSortedPlaces(byCountry, total)
}

func leakSortedPlaces(m map[string]*LeakPlace, total uint64) []LeakPlace {
	out := make([]LeakPlace, 0, len(m))
	for _, p := range m {
		if total > 0 {
			p.Share = leakRound4(min(1, float64(p.RequestsInWindow)/float64(total)))
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

// leakHops returns a key's hand-overs between countries faster than leakMaxTravelKMH, from its
// hourly caller rows in one country each (spans), fastest first: consecutive runs of use (rows in
// time order, merged while the country stays the same), the later arriving in the window, each
// carrying minRequests, the second starting after the first ended, too soon for the distance. Two
// countries used at the same time anywhere in the spans (overlapping rows) are two users, not
// travel (the new-country signal covers a new one). Whether a hop counts is the judge's (travel).
func leakHops(spans []leakSpan, windowStart time.Time, minRequests uint64) []LeakTravel {
	sorted := slices.Clone(spans)
	slices.SortFunc(sorted, func(x, y leakSpan) int {
		return cmp.Or(x.first.Compare(y.first), cmp.Compare(x.country, y.country))
	})
	// Which countries were used at the same time: a sweep over the spans in order of their start,
	// keeping each country's latest end so far.
	type pair struct{ a, b string }
	together := map[pair]bool{}
	until := map[string]time.Time{}
	for _, sp := range sorted {
		for c, end := range until {
			if c != sp.country && !end.Before(sp.first) {
				together[pair{c, sp.country}], together[pair{sp.country, c}] = true, true
			}
		}
		until[sp.country] = later(until[sp.country], sp.last)
	}
	var runs []leakSpan
	for _, sp := range sorted {
		if n := len(runs); n > 0 && runs[n-1].country == sp.country {
			runs[n-1].last = later(runs[n-1].last, sp.last)
			runs[n-1].requests += sp.requests
			continue
		}
		runs = append(runs, sp)
	}
	var out []LeakTravel
	for i := 1; i < len(runs); i++ {
		from, to := runs[i-1], runs[i]
		if to.first.Before(windowStart) || from.requests < minRequests || to.requests < minRequests ||
			together[pair{from.country, to.country}] || !from.last.Before(to.first) {
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
	slices.SortFunc(out, func(x, y LeakTravel) int {
		return cmp.Or(cmp.Compare(y.KMPerHour, x.KMPerHour), cmp.Compare(x.From, y.From), cmp.Compare(x.To, y.To))
	})
	return out
}

// onePlace reports whether a key's history shows one place at a time (leakTravelMinHistoryHours
// and the limits beside it).
func (h LeakHistory) onePlace() bool {
	return h.Hours >= leakTravelMinHistoryHours && h.HoursTwoCountries*leakTravelConcurrentRatio <= h.Hours &&
		h.UserAgentFamilies <= leakTravelMaxUAFamilies && h.Networks <= leakTravelMaxNetworks
}

// switched reports whether the history holds a switch between countries a and b, either way.
func (h LeakHistory) switched(a, b string) bool {
	return slices.Contains(h.Switches, a+">"+b) || slices.Contains(h.Switches, b+">"+a)
}

// travel returns the key's hops that count, fastest first, and its history when a hop between two
// countries of its baseline counts: a hop counts when either country is new to the key, or when
// its history shows one place at a time and never the same switch within hours (a key that runs in
// both countries at once fails over between them, one that switched between them before has a VPN
// or a second user; one that never did cannot be in both minutes apart).
func (r *leakRun) travel(key string, b *leakBaselineSet) ([]LeakTravel, *LeakHistory) {
	hist, read := r.history[key]
	onePlace := read && hist.onePlace()
	var out []LeakTravel
	var shown *LeakHistory
	for _, t := range r.hops[key] {
		t.Familiar = b.countries[t.From] && b.countries[t.To]
		if t.Familiar && (!onePlace || hist.switched(t.From, t.To)) {
			continue
		}
		if t.Familiar {
			h := hist
			h.OnePlace = true
			shown = &h
		}
		out = append(out, t)
	}
	return out, shown
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
