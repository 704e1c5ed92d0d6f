package ingest

import (
	"net/netip"
	"slices"
	"time"
)

// Rollups: ingest aggregates the events of its batches itself and inserts the aggregated rows into
// the rollups' input tables (migration 0020), every ingest.rollup_interval for the batches stored
// meanwhile, so that ClickHouse stores each event once and a few aggregated rows, instead of
// aggregating every event again in a view per rollup. Each insert also carries one progress row
// per topic and partition of those batches (progress_offset >= 0: the highest offset of an event
// the rollup now counts), which the input table's progress view records in ingest_progress within
// the same insert.
//
// The rows are those ClickHouse's own views compute from auth_events (CreateRollupViews): the same
// groups, sums, minima and maxima; anyLast and the samples take the order events arrive in.

// eventTable indexes the tables every auth event is stored in: auth_events, then the rollups.
type eventTable int

const (
	tableIndexAuthEvents eventTable = iota
	tableIndexMinutes
	tableIndexCallerHours
	tableIndexUsage
	tableIndexNetworks1d
	tableIndexIPs1h
	tableIndexFingerprints
	tableIndexRefusals
	eventTables // how many
)

// eventTableNames are the tables' names, as ingest_progress names them.
var eventTableNames = [eventTables]string{
	tableAuthEvents, "key_minutes", "key_caller_hours", "key_usage", "key_networks_1d", "key_ips_1h", "key_fingerprints",
	"key_refusals_1h",
}

// sampleSize is how many distinct addresses and user agents key_networks_1d keeps per row
// (groupUniqArray(5) in its definition).
const sampleSize = 5

// The inserts into the input tables, in the order of the columns inserts() builds.
const (
	insertMinutes     = `INSERT INTO key_minutes_in (key_id, minute, client_id, outcome, requests, progress_topic, progress_partition, progress_offset)`
	insertCallerHours = `INSERT INTO key_caller_hours_in (key_id, hour, client_id, ip, user_agent, asn, country, requests, failures,
	first_seen, last_seen, last_ok, progress_topic, progress_partition, progress_offset)`
	insertUsage      = `INSERT INTO key_usage_in (key_id, client_id, requests, first_seen, last_seen, progress_topic, progress_partition, progress_offset)`
	insertNetworks1d = `INSERT INTO key_networks_1d_in (key_id, day, net_ip, country, asn, as_org, requests, failures, first_seen, last_seen,
	sample_ips, sample_uas, progress_topic, progress_partition, progress_offset)`
	insertIPs1h        = `INSERT INTO key_ips_1h_in (key_id, hour, ips, progress_topic, progress_partition, progress_offset)`
	insertFingerprints = `INSERT INTO key_fingerprints_in (key_fingerprint, last_key_id, last_client_id, first_seen, last_seen,
	progress_topic, progress_partition, progress_offset)`
	insertRefusals = `INSERT INTO key_refusals_1h_in (key_id, hour, method, route, ip, user_agent, asn, requests, first_seen, last_seen,
	progress_topic, progress_partition, progress_offset)`
)

// span is the first and last time of a group's events, in Unix milliseconds.
type span struct{ first, last int64 }

func (s *span) add(ms int64) {
	s.first, s.last = min(s.first, ms), max(s.last, ms)
}

func newSpan(ms int64) span { return span{ms, ms} }

type minuteKey struct {
	minute          int64 // Unix seconds
	keyID, clientID string
	outcome         int8
}

type callerKey struct {
	hour                       int64
	keyID, clientID, userAgent string
	ip                         netip.Addr
}

type callerAgg struct {
	asn                uint32
	country            string
	requests, failures uint64
	span
	lastOK int64 // Unix milliseconds; 0 when every request was refused
}

type usageAgg struct {
	clientID string
	requests uint64
	span
}

// networkKey is a key's network on a day: its ASN when known, else the /24 (IPv4) or /48 (IPv6)
// its addresses share, as cutIPv6(ip, 10, 1) gives it.
type networkKey struct {
	day            int64
	keyID, country string
	asn            uint32
	prefix         netip.Addr // the zero Addr when asn is known
}

type networkAgg struct {
	netIP              netip.Addr
	asn                uint32
	asOrg              string
	requests, failures uint64
	span
	sampleIPs []netip.Addr
	sampleUAs []string
}

type ipHourKey struct {
	hour  int64
	keyID string
}

type fingerprintAgg struct {
	keyID, clientID string
	span
}

// refusalKey is a group of key_refusals_1h: a key's forbidden requests in an hour from one
// address, user agent and ASN to one method and route.
type refusalKey struct {
	hour                            int64
	keyID, method, route, userAgent string
	ip                              netip.Addr
	asn                             uint32
}

type refusalAgg struct {
	requests uint64
	span
}

// rollupRows aggregates the events of one batch into each rollup's rows. It is reused from batch
// to batch.
type rollupRows struct {
	minutes      map[minuteKey]uint64 // requests
	callers      map[callerKey]*callerAgg
	usage        map[string]*usageAgg
	networks     map[networkKey]*networkAgg
	ipHours      map[ipHourKey][]netip.Addr
	ipSeen       map[ipHourIP]struct{}
	fingerprints map[string]*fingerprintAgg
	refusals     map[refusalKey]*refusalAgg
	// progress is, per topic and partition, the highest offset of an event each table counts.
	progress map[progressKey]*[eventTables]int64
}

type ipHourIP struct {
	ipHourKey
	ip netip.Addr
}

type progressKey struct {
	topic     string
	partition int32
}

func newRollupRows() *rollupRows {
	return &rollupRows{
		minutes: map[minuteKey]uint64{}, callers: map[callerKey]*callerAgg{}, usage: map[string]*usageAgg{},
		networks: map[networkKey]*networkAgg{}, ipHours: map[ipHourKey][]netip.Addr{}, ipSeen: map[ipHourIP]struct{}{},
		fingerprints: map[string]*fingerprintAgg{}, refusals: map[refusalKey]*refusalAgg{}, progress: map[progressKey]*[eventTables]int64{},
	}
}

func (r *rollupRows) reset() {
	clear(r.minutes)
	clear(r.callers)
	clear(r.usage)
	clear(r.networks)
	clear(r.ipHours)
	clear(r.ipSeen)
	clear(r.fingerprints)
	clear(r.refusals)
	clear(r.progress)
}

// addBatch aggregates the events of b's chunks, each into the rollups that do not hold it yet.
func (r *rollupRows) addBatch(b *batch) {
	for _, ch := range b.chunks {
		e := &ch.events
		for i := range e.len() {
			r.addEvent(e, i, ch.stored)
		}
	}
}

// addEvent adds event i of e to every rollup whose stored offset for its partition is below the
// event's.
func (r *rollupRows) addEvent(e *eventColumns, i int, stored [eventTables]int64) {
	off := e.offset[i]
	pk := progressKey{e.src[i], e.partition[i]}
	prog := r.progress[pk]
	if prog == nil {
		prog = &[eventTables]int64{}
		for t := range prog {
			prog[t] = -1
		}
		r.progress[pk] = prog
	}
	ms := e.ts[i]
	sec := floorDiv(ms, 1000)
	ok := e.outcome[i] == outcomeCodes[OutcomeOK]
	var failure uint64
	if !ok {
		failure = 1
	}
	counts := func(t eventTable) bool {
		if off <= stored[t] {
			return false
		}
		prog[t] = max(prog[t], off)
		return true
	}
	if counts(tableIndexMinutes) {
		r.minutes[minuteKey{floorDiv(sec, 60) * 60, e.keyID[i], e.clientID[i], e.outcome[i]}]++
	}
	hour := floorDiv(sec, 3600) * 3600
	if counts(tableIndexCallerHours) {
		k := callerKey{hour, e.keyID[i], e.clientID[i], e.userAgent[i], e.ip[i]}
		a := r.callers[k]
		if a == nil {
			a = &callerAgg{span: newSpan(ms)}
			r.callers[k] = a
		}
		a.asn, a.country = e.asn[i], e.country[i]
		a.requests++
		a.failures += failure
		a.add(ms)
		if ok {
			a.lastOK = max(a.lastOK, ms)
		}
	}
	if counts(tableIndexUsage) {
		a := r.usage[e.keyID[i]]
		if a == nil {
			a = &usageAgg{span: newSpan(ms)}
			r.usage[e.keyID[i]] = a
		}
		a.clientID = e.clientID[i]
		a.requests++
		a.add(ms)
	}
	if counts(tableIndexNetworks1d) {
		k := networkKey{day: floorDiv(sec, 86400) * 86400, keyID: e.keyID[i], country: e.country[i], asn: e.asn[i]}
		prefix := networkPrefix(e.ip[i])
		if k.asn == 0 {
			k.prefix = prefix
		}
		a := r.networks[k]
		if a == nil {
			a = &networkAgg{netIP: prefix, span: newSpan(ms)}
			r.networks[k] = a
		}
		a.asn, a.asOrg = e.asn[i], e.asOrg[i]
		a.requests++
		a.failures += failure
		a.add(ms)
		if len(a.sampleIPs) < sampleSize && !slices.Contains(a.sampleIPs, e.ip[i]) {
			a.sampleIPs = append(a.sampleIPs, e.ip[i])
		}
		if len(a.sampleUAs) < sampleSize && !slices.Contains(a.sampleUAs, e.userAgent[i]) {
			a.sampleUAs = append(a.sampleUAs, e.userAgent[i])
		}
	}
	if counts(tableIndexIPs1h) {
		k := ipHourKey{hour, e.keyID[i]}
		if _, seen := r.ipSeen[ipHourIP{k, e.ip[i]}]; !seen {
			r.ipSeen[ipHourIP{k, e.ip[i]}] = struct{}{}
			r.ipHours[k] = append(r.ipHours[k], e.ip[i])
		}
	}
	if counts(tableIndexFingerprints) && e.keyFP[i] != "" {
		fp := e.keyFP[i]
		a := r.fingerprints[fp]
		if a == nil {
			r.fingerprints[fp] = &fingerprintAgg{e.keyID[i], e.clientID[i], newSpan(ms)}
		} else {
			if ms > a.last { // argMax keeps the first of equal times
				a.keyID, a.clientID = e.keyID[i], e.clientID[i]
			}
			a.add(ms)
		}
	}
	if counts(tableIndexRefusals) && e.outcome[i] == outcomeCodes[OutcomeForbidden] {
		k := refusalKey{hour, e.keyID[i], e.method[i], e.route[i], e.userAgent[i], e.ip[i], e.asn[i]}
		a := r.refusals[k]
		if a == nil {
			a = &refusalAgg{span: newSpan(ms)}
			r.refusals[k] = a
		}
		a.requests++
		a.add(ms)
	}
}

// networkPrefix is cutIPv6(ip, 10, 1): an IPv4 address (IPv4-mapped) with its last byte zeroed,
// any other address with all but its first 6 bytes zeroed.
func networkPrefix(ip netip.Addr) netip.Addr {
	b := ip.As16()
	if ip.Is4In6() {
		b[15] = 0
	} else {
		clear(b[6:])
	}
	return netip.AddrFrom16(b)
}

// floorDiv divides rounding toward negative infinity, as toStartOfMinute/Hour/Day do for times
// before 1970.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// rollupInsert is one input table's insert: its statement and columns.
type rollupInsert struct {
	table   eventTable
	query   string
	rows    int // aggregated rows
	total   int // rows, progress rows included
	columns []any
}

// progressColumns are the three progress columns every input table ends with.
type progressColumns struct {
	topic     []string
	partition []int32
	offset    []int64
}

// dataRow marks an aggregated row: progress_offset -1.
func (p *progressColumns) dataRow() {
	p.topic, p.partition, p.offset = append(p.topic, ""), append(p.partition, 0), append(p.offset, -1)
}

// inserts returns each rollup's insert: its aggregated rows, then one progress row per topic and
// partition whose events it counts. zero is called once per progress row to append the other
// columns' zero values.
func (r *rollupRows) inserts() []rollupInsert {
	progressOf := func(t eventTable, p *progressColumns, zero func()) {
		for k, v := range r.progress {
			if v[t] >= 0 {
				zero()
				p.topic, p.partition, p.offset = append(p.topic, k.topic), append(p.partition, k.partition), append(p.offset, v[t])
			}
		}
	}
	secs := func(s int64) time.Time { return time.Unix(s, 0).UTC() }
	var out []rollupInsert

	{
		var keyID, clientID []string
		var minute []time.Time
		var outcome []int8
		var requests []uint64
		var p progressColumns
		for k, n := range r.minutes {
			keyID, minute, clientID, outcome, requests = append(keyID, k.keyID), append(minute, secs(k.minute)), append(clientID, k.clientID), append(outcome, k.outcome), append(requests, n)
			p.dataRow()
		}
		n := len(keyID)
		progressOf(tableIndexMinutes, &p, func() {
			keyID, minute, clientID, outcome, requests = append(keyID, ""), append(minute, secs(0)), append(clientID, ""), append(outcome, outcomeCodes[OutcomeOK]), append(requests, 0)
		})
		out = append(out, rollupInsert{tableIndexMinutes, insertMinutes, n, len(p.offset),
			[]any{keyID, minute, clientID, outcome, requests, p.topic, p.partition, p.offset}})
	}
	{
		var keyID, clientID, userAgent, country []string
		var hour []time.Time
		var ip []netip.Addr
		var asn []uint32
		var requests, failures []uint64
		var first, last, lastOK []int64
		var p progressColumns
		for k, a := range r.callers {
			keyID, hour, clientID, ip, userAgent = append(keyID, k.keyID), append(hour, secs(k.hour)), append(clientID, k.clientID), append(ip, k.ip), append(userAgent, k.userAgent)
			asn, country, requests, failures = append(asn, a.asn), append(country, a.country), append(requests, a.requests), append(failures, a.failures)
			first, last, lastOK = append(first, a.first), append(last, a.last), append(lastOK, a.lastOK)
			p.dataRow()
		}
		n := len(keyID)
		progressOf(tableIndexCallerHours, &p, func() {
			keyID, hour, clientID, ip, userAgent = append(keyID, ""), append(hour, secs(0)), append(clientID, ""), append(ip, netip.IPv6Unspecified()), append(userAgent, "")
			asn, country, requests, failures = append(asn, 0), append(country, ""), append(requests, 0), append(failures, 0)
			first, last, lastOK = append(first, 0), append(last, 0), append(lastOK, 0)
		})
		out = append(out, rollupInsert{tableIndexCallerHours, insertCallerHours, n, len(p.offset),
			[]any{keyID, hour, clientID, ip, userAgent, asn, country, requests, failures, first, last, lastOK, p.topic, p.partition, p.offset}})
	}
	{
		var keyID, clientID []string
		var requests []uint64
		var first, last []int64
		var p progressColumns
		for k, a := range r.usage {
			keyID, clientID, requests, first, last = append(keyID, k), append(clientID, a.clientID), append(requests, a.requests), append(first, a.first), append(last, a.last)
			p.dataRow()
		}
		n := len(keyID)
		progressOf(tableIndexUsage, &p, func() {
			keyID, clientID, requests, first, last = append(keyID, ""), append(clientID, ""), append(requests, 0), append(first, 0), append(last, 0)
		})
		out = append(out, rollupInsert{tableIndexUsage, insertUsage, n, len(p.offset),
			[]any{keyID, clientID, requests, first, last, p.topic, p.partition, p.offset}})
	}
	{
		var keyID, country, asOrg []string
		var day []time.Time
		var netIP []netip.Addr
		var asn []uint32
		var requests, failures []uint64
		var first, last []int64
		var sampleIPs [][]netip.Addr
		var sampleUAs [][]string
		var p progressColumns
		for k, a := range r.networks {
			keyID, day, netIP, country, asn, asOrg = append(keyID, k.keyID), append(day, secs(k.day)), append(netIP, a.netIP), append(country, k.country), append(asn, a.asn), append(asOrg, a.asOrg)
			requests, failures, first, last = append(requests, a.requests), append(failures, a.failures), append(first, a.first), append(last, a.last)
			sampleIPs, sampleUAs = append(sampleIPs, a.sampleIPs), append(sampleUAs, a.sampleUAs)
			p.dataRow()
		}
		n := len(keyID)
		progressOf(tableIndexNetworks1d, &p, func() {
			keyID, day, netIP, country, asn, asOrg = append(keyID, ""), append(day, secs(0)), append(netIP, netip.IPv6Unspecified()), append(country, ""), append(asn, 0), append(asOrg, "")
			requests, failures, first, last = append(requests, 0), append(failures, 0), append(first, 0), append(last, 0)
			sampleIPs, sampleUAs = append(sampleIPs, []netip.Addr{}), append(sampleUAs, []string{})
		})
		out = append(out, rollupInsert{tableIndexNetworks1d, insertNetworks1d, n, len(p.offset),
			[]any{keyID, day, netIP, country, asn, asOrg, requests, failures, first, last, sampleIPs, sampleUAs, p.topic, p.partition, p.offset}})
	}
	{
		var keyID []string
		var hour []time.Time
		var ips [][]netip.Addr
		var p progressColumns
		for k, a := range r.ipHours {
			keyID, hour, ips = append(keyID, k.keyID), append(hour, secs(k.hour)), append(ips, a)
			p.dataRow()
		}
		n := len(keyID)
		progressOf(tableIndexIPs1h, &p, func() {
			keyID, hour, ips = append(keyID, ""), append(hour, secs(0)), append(ips, []netip.Addr{})
		})
		out = append(out, rollupInsert{tableIndexIPs1h, insertIPs1h, n, len(p.offset), []any{keyID, hour, ips, p.topic, p.partition, p.offset}})
	}
	{
		var fp, keyID, clientID []string
		var first, last []int64
		var p progressColumns
		for k, a := range r.fingerprints {
			fp, keyID, clientID, first, last = append(fp, k), append(keyID, a.keyID), append(clientID, a.clientID), append(first, a.first), append(last, a.last)
			p.dataRow()
		}
		n := len(fp)
		progressOf(tableIndexFingerprints, &p, func() {
			fp, keyID, clientID, first, last = append(fp, ""), append(keyID, ""), append(clientID, ""), append(first, 0), append(last, 0)
		})
		out = append(out, rollupInsert{tableIndexFingerprints, insertFingerprints, n, len(p.offset),
			[]any{fp, keyID, clientID, first, last, p.topic, p.partition, p.offset}})
	}
	{
		var keyID, method, route, userAgent []string
		var hour []time.Time
		var ip []netip.Addr
		var asn []uint32
		var requests []uint64
		var first, last []int64
		var p progressColumns
		for k, a := range r.refusals {
			keyID, hour, method, route, ip, userAgent, asn = append(keyID, k.keyID), append(hour, secs(k.hour)), append(method, k.method), append(route, k.route), append(ip, k.ip), append(userAgent, k.userAgent), append(asn, k.asn)
			requests, first, last = append(requests, a.requests), append(first, a.first), append(last, a.last)
			p.dataRow()
		}
		n := len(keyID)
		progressOf(tableIndexRefusals, &p, func() {
			keyID, hour, method, route, ip, userAgent, asn = append(keyID, ""), append(hour, secs(0)), append(method, ""), append(route, ""), append(ip, netip.IPv6Unspecified()), append(userAgent, ""), append(asn, 0)
			requests, first, last = append(requests, 0), append(first, 0), append(last, 0)
		})
		out = append(out, rollupInsert{tableIndexRefusals, insertRefusals, n, len(p.offset),
			[]any{keyID, hour, method, route, ip, userAgent, asn, requests, first, last, p.topic, p.partition, p.offset}})
	}
	return out
}
