package ingest

import (
	"context"
	"fmt"
	"regexp"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// rollupViews fill every rollup from auth_events with ClickHouse alone: what a team would build
// without keywatch, aggregating every inserted event again in each view. Ingest does not use
// them (it inserts the rollups' rows itself); the ingest benchmark's peer, the detection
// benchmark's loader and the tests that store events with a plain INSERT INTO auth_events do.
// TestRollupsMatchTheViews checks that ingest's rollups equal theirs.
var rollupViews = []string{
	`CREATE MATERIALIZED VIEW IF NOT EXISTS key_minutes_from_raw_mv TO key_minutes AS
SELECT toStartOfMinute(ts) AS minute, key_id, client_id, outcome, count() AS requests
FROM auth_events
GROUP BY minute, key_id, client_id, outcome`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS key_caller_hours_from_raw_mv TO key_caller_hours AS
SELECT toStartOfHour(ts) AS hour, key_id, client_id, ip, user_agent, anyLast(asn) AS asn, anyLast(country) AS country,
    count() AS requests, countIf(outcome != 'ok') AS failures,
    toUInt16(toUnixTimestamp(min(ts)) - toUnixTimestamp(hour)) AS first_s,
    toUInt16(toUnixTimestamp(max(ts)) - toUnixTimestamp(hour)) AS last_s,
    if(countIf(outcome = 'ok') = 0, 0, toUInt16(toUnixTimestamp(maxIf(ts, outcome = 'ok')) - toUnixTimestamp(hour) + 1)) AS last_ok_s
FROM auth_events
GROUP BY hour, key_id, client_id, ip, user_agent`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS key_caller_months_from_raw_mv TO key_caller_months AS
SELECT toStartOfMonth(ts) AS month, key_id, client_id, ip, user_agent,
    max(toDateTime(ts, 'UTC')) AS last_seen, maxIf(toDateTime(ts, 'UTC'), outcome = 'ok') AS last_ok,
    groupBitmapState(toUInt32(intDiv(toUnixTimestamp(ts), 3600))) AS hours
FROM auth_events
GROUP BY month, key_id, client_id, ip, user_agent`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS key_usage_from_raw_mv TO key_usage AS
SELECT key_id, anyLast(client_id) AS client_id, count() AS requests, min(ts) AS first_seen, max(ts) AS last_seen
FROM auth_events
GROUP BY key_id`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS key_networks_1d_from_raw_mv TO key_networks_1d AS
SELECT day, key_id, network, country, anyLast(asn) AS asn, anyLast(as_org) AS as_org, count() AS requests,
    countIf(outcome != 'ok') AS failures, min(ts) AS first_seen, max(ts) AS last_seen,
    groupUniqArrayState(5)(ip) AS sample_ips, groupUniqArrayState(5)(ua) AS sample_uas
FROM
(
    SELECT toDate(ts) AS day, key_id, country, asn, as_org, outcome, ts, ip, toString(user_agent) AS ua,
           if(asn != 0, concat('AS', toString(asn)),
              if(startsWith(cutIPv6(ip, 10, 1), '::ffff:'), concat(substring(cutIPv6(ip, 10, 1), 8), '/24'),
                 concat(cutIPv6(ip, 10, 1), '/48'))) AS network
    FROM auth_events
)
GROUP BY day, key_id, network, country`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS key_ips_1h_from_raw_mv TO key_ips_1h AS
SELECT toStartOfHour(ts) AS hour, key_id, uniqState(ip) AS distinct_ips
FROM auth_events
GROUP BY hour, key_id`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS key_fingerprints_from_raw_mv TO key_fingerprints AS
SELECT key_fingerprint, argMaxState(toString(key_id), ts) AS key_id, argMaxState(toString(client_id), ts) AS client_id,
    min(ts) AS first_seen, max(ts) AS last_seen
FROM auth_events
WHERE key_fingerprint != ''
GROUP BY key_fingerprint`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS key_refusals_1h_from_raw_mv TO key_refusals_1h AS
SELECT toStartOfHour(ts) AS hour, key_id, method, route, ip, user_agent, asn, count() AS requests,
    min(ts) AS first_seen, max(ts) AS last_seen
FROM auth_events
WHERE outcome = 'forbidden'
GROUP BY hour, key_id, method, route, ip, user_agent, asn`,
}

// CreateRollupViews adds to the database of conn the materialized views that fill every rollup
// from auth_events with ClickHouse alone (a single server's schema). Events then go into
// auth_events only, by INSERT; ingest must not consume into that database, or its rollups count
// each event twice.
func CreateRollupViews(ctx context.Context, conn driver.Conn) error {
	for _, q := range rollupViews {
		if err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("create the rollup views on auth_events: %w", err)
		}
	}
	return nil
}

// rollupCells reads each rollup's groups with every value finalized, one query per rollup. Two
// kinds of value depend on the order events arrive in, and are compared as far as they do not: a
// sample of key_networks_1d by its size (which five values it keeps), and key_usage's client not
// at all (a key called by several clients names the one whose event came last). The other
// anyLast values (a caller's ASN and country, a network's ASN and organisation) are the same for
// every event of their group.
var rollupCells = []struct{ table, query string }{
	{"key_minutes", `SELECT minute, key_id, client_id, outcome, sum(requests)
FROM %s.key_minutes GROUP BY minute, key_id, client_id, outcome`},
	{"key_caller_hours", `SELECT hour, key_id, client_id, ip, user_agent, min(asn), min(country), sum(requests), sum(failures),
    min(first_seen), max(last_seen), max(last_ok)
FROM %s.key_caller_hours GROUP BY hour, key_id, client_id, ip, user_agent`},
	{"key_caller_months", `SELECT month, key_id, client_id, ip, user_agent, max(last_seen), max(last_ok),
    arraySort(bitmapToArray(groupBitmapMergeState(hours)))
FROM %s.key_caller_months GROUP BY month, key_id, client_id, ip, user_agent`},
	{"key_usage", `SELECT key_id, sum(requests), min(first_seen), max(last_seen)
FROM %s.key_usage GROUP BY key_id`},
	{"key_networks_1d", `SELECT day, key_id, network, country, min(asn), min(as_org), sum(requests), sum(failures), min(first_seen),
    max(last_seen), length(groupUniqArrayMerge(5)(sample_ips)), length(groupUniqArrayMerge(5)(sample_uas))
FROM %s.key_networks_1d GROUP BY day, key_id, network, country`},
	{"key_ips_1h", `SELECT hour, key_id, uniqMerge(distinct_ips)
FROM %s.key_ips_1h GROUP BY hour, key_id`},
	{"key_fingerprints", `SELECT key_fingerprint, argMaxMerge(key_id), argMaxMerge(client_id), min(first_seen), max(last_seen)
FROM %s.key_fingerprints GROUP BY key_fingerprint`},
	{"key_refusals_1h", `SELECT hour, key_id, method, route, ip, user_agent, asn, sum(requests), min(first_seen), max(last_seen)
FROM %s.key_refusals_1h GROUP BY hour, key_id, method, route, ip, user_agent, asn`},
}

// RollupTables names the rollups ingest builds from auth events.
func RollupTables() []string {
	var out []string
	for _, c := range rollupCells {
		out = append(out, c.table)
	}
	return out
}

var reDatabase = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// RollupComparison is one rollup's groups in two databases, and how many of each are missing from
// the other or differ in a value.
type RollupComparison struct {
	Table          string
	GroupsA        uint64
	GroupsB        uint64
	OnlyA, OnlyB   uint64 // groups (with all their values) one database has and the other has not
	DifferentCells bool   // OnlyA or OnlyB > 0
}

// CompareRollups compares every rollup of databases a and b on conn's server, group by group and
// value by value.
func CompareRollups(ctx context.Context, conn driver.Conn, a, b string) ([]RollupComparison, error) {
	for _, db := range []string{a, b} {
		if !reDatabase.MatchString(db) {
			return nil, fmt.Errorf("compare rollups: %q is not a database name", db)
		}
	}
	var out []RollupComparison
	for _, c := range rollupCells {
		qa, qb := fmt.Sprintf(c.query, "`"+a+"`"), fmt.Sprintf(c.query, "`"+b+"`")
		r := RollupComparison{Table: c.table}
		q := fmt.Sprintf(`SELECT (SELECT count() FROM (%s)), (SELECT count() FROM (%s)),
    (SELECT count() FROM (%s EXCEPT %s)), (SELECT count() FROM (%s EXCEPT %s))`, qa, qb, qa, qb, qb, qa)
		if err := conn.QueryRow(ctx, q).Scan(&r.GroupsA, &r.GroupsB, &r.OnlyA, &r.OnlyB); err != nil {
			return nil, fmt.Errorf("compare %s of databases %s and %s: %w", c.table, a, b, err)
		}
		r.DifferentCells = r.OnlyA > 0 || r.OnlyB > 0
		out = append(out, r)
	}
	return out, nil
}
