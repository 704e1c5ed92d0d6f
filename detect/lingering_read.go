package detect

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
)

// subUse is one sub-caller's traffic with one key (or, for a rotation's successors, with all of
// them) since a window start.
type subUse struct {
	Requests, Failures  uint64
	FirstSeen, LastSeen time.Time
	LastOK              time.Time // zero when every request was refused
}

// ok reports whether any request succeeded at or after t.
func (u subUse) okSince(t time.Time) bool { return !u.LastOK.IsZero() && !u.LastOK.Before(t) }

// add sums v into u.
func (u *subUse) add(v subUse) {
	if u.Requests == 0 || v.FirstSeen.Before(u.FirstSeen) {
		u.FirstSeen = v.FirstSeen
	}
	u.Requests += v.Requests
	u.Failures += v.Failures
	u.LastSeen = later(u.LastSeen, v.LastSeen)
	u.LastOK = later(u.LastOK, v.LastOK)
}

// keyUse is each key's sub-callers with their traffic since the key's window start.
type keyUse map[string]map[callerID]subUse

// The lingering detector reads callers in two passes (see judge). The first chooses, from
// key_caller_months (one row per key, caller and month), the callers that may still depend on a
// key: when each last called and last succeeded. The second reads from key_caller_hours, for the
// callers the first chose only, their counts since the window start, which the findings show.
// Each query is a use (which table, up to the window starts) completed by its columns, the
// callers it is restricted to, and its bound up to now.

// hourUseSince is a sub-caller's use of each key since its window start, subUse's columns in order,
// from the keys' rows since then: the keys, the earliest window start (unix milliseconds, as every
// time is bound; prunes partitions), the keys again with each one's own window start. Windows
// start at the top of the hour of their start (the rollup's granularity), so counts may include
// up to an hour before it; first_seen, last_seen and last_ok are to the second, which is what is
// judged. A key's rows are together in the rollup (key_id leads its primary key, partitions are
// monthly), so the query reads the keys' rows of the months since the earliest start.
const hourUseSince = `
    sum(requests),
    sum(failures),
    min(first_seen),
    max(last_seen),
    max(last_ok)
FROM key_caller_hours
WHERE key_id IN ?
  AND hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
  AND hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(transform(toString(key_id), ?, ?, 0)), 'UTC'))`

// hourUpTo bounds hourUseSince to now: hours after it are not read.
const hourUpTo = `
  AND hour <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')`

// monthUseSince is hourUseSince from key_caller_months, with the same arguments: the last call and
// last success since the start of the month of the window start (no counts, no first call). What
// is judged needs no more: a sub-caller seen since the window start was seen last then or later,
// and succeeded since the start if its last success is at or after it.
const monthUseSince = `
    toUInt64(0),
    toUInt64(0),
    toDateTime(0, 'UTC'),
    max(last_seen),
    max(last_ok)
FROM key_caller_months
WHERE key_id IN ?
  AND month >= toStartOfMonth(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
  AND month >= toStartOfMonth(fromUnixTimestamp64Milli(toInt64(transform(toString(key_id), ?, ?, 0)), 'UTC'))`

// monthUpTo bounds monthUseSince to now's month. Calls later in that month are read, and a
// caller with any is read again from key_caller_hours (see judge).
const monthUpTo = `
  AND month <= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))`

// subCallerColumns selects who called each key, per sub-caller (client, IP, user agent), completed
// by a use. IPv4 addresses are shown without their ::ffff: prefix.
const subCallerColumns = `
SELECT
    key_id,
    client_id,
    replaceRegexpOne(IPv6NumToString(ip), '^::ffff:([0-9.]+)$', '\\1') AS ip_text,
    user_agent,`

// callerColumns selects who called each key, per caller of the old keys (a client over all its
// addresses, per user agent, or an (IP, user agent) pair without a client), completed by a use. A
// client's addresses may change (a mobile app, CI runners, a job in a new container each run), so
// whether a client, or one of its user agents, moved is told by all of its traffic with the later
// keys, not only that of the addresses it used with the old one.
const callerColumns = `
SELECT
    key_id,
    client_id,
    if(client_id = '', replaceRegexpOne(IPv6NumToString(ip), '^::ffff:([0-9.]+)$', '\\1'), '') AS caller_ip,
    user_agent,`

// oldSubCallers is the sub-callers to read, each with a key to read it on: the external table
// old_callers (key_id, client_id, ip as text, user_agent). Its tuples are a prefix of the rollups'
// primary keys, so only those sub-callers' rows are read: the old keys' callers on the later keys
// of their chains (read once from the old keys, then sent), or the callers the first pass of judge
// chose on their keys.
const oldSubCallers = `SELECT key_id, client_id, toIPv6(ip) AS ip, user_agent FROM old_callers`

// Restrictions to the sub-callers of oldSubCallers, and to their callers (a client over all its
// addresses and user agents, read per user agent; a sub-caller without a client).
const (
	ofOldSubCallers = `
  AND (key_id, client_id, ip, user_agent) IN (` + oldSubCallers + `)`
	ofOldCallers = `
  AND (key_id, client_id, if(client_id = '', ip, toIPv6('::')), if(client_id = '', user_agent, '')) IN (
    SELECT DISTINCT key_id, client_id, if(client_id = '', ip, toIPv6('::')), if(client_id = '', user_agent, '') FROM (` + oldSubCallers + `))`
	bySubCaller = `
GROUP BY key_id, client_id, ip, user_agent`
	byCaller = `
GROUP BY key_id, client_id, caller_ip, user_agent`
)

// The callers queries. Arguments: the keys, the earliest window start, the keys again with each
// one's window start, now.
const (
	// selectOwnCallers reads every sub-caller of each key since its window start.
	selectOwnCallers = subCallerColumns + hourUseSince + hourUpTo + bySubCaller
	// selectSubCallers reads those of old_callers.
	selectSubCallers = subCallerColumns + hourUseSince + ofOldSubCallers + hourUpTo + bySubCaller
	// selectSuccessorCallers reads the callers of old_callers.
	selectSuccessorCallers = callerColumns + hourUseSince + ofOldCallers + hourUpTo + byCaller
	// selectRecentOwnCallers, selectRecentSubCallers and selectRecentSuccessorCallers are the
	// same from key_caller_months.
	selectRecentOwnCallers       = subCallerColumns + monthUseSince + monthUpTo + bySubCaller
	selectRecentSubCallers       = subCallerColumns + monthUseSince + ofOldSubCallers + monthUpTo + bySubCaller
	selectRecentSuccessorCallers = callerColumns + monthUseSince + ofOldCallers + monthUpTo + byCaller
)

// selectCadence reads, for the sub-callers on the keys of the external table rhythm_of (key_id,
// client_id, ip as text, user_agent: a sub-caller's rhythm is over the keys of its rotation's
// chain), their active hours between the lookback start and now: how many, and the longest and
// second-longest gap between two of them (seconds; 0 when there are not that many gaps). The
// active hours are key_caller_months' bitmaps of hours since 1970 (sorted here: a small bitmap
// keeps them in the order they came), one row per key, sub-caller and month; the tuples are a
// prefix of its primary key, so only those sub-callers' rows are read. An external table, not bound values, carries them, as thousands of callers would
// not fit in a query's text. Arguments: the lookback start, now.
const selectCadence = `
WITH intDiv(toInt64(?), 3600000) AS first_hour, intDiv(toInt64(?), 3600000) AS last_hour
SELECT
    client_id,
    replaceRegexpOne(IPv6NumToString(ip), '^::ffff:([0-9.]+)$', '\\1') AS ip_text,
    user_agent,
    length(active),
    gaps[1],
    gaps[2]
FROM
(
    SELECT
        client_id, ip, user_agent,
        arrayFilter(h -> h >= first_hour AND h <= last_hour, arraySort(bitmapToArray(groupBitmapMergeState(hours)))) AS active,
        arrayReverseSort(arrayPopFront(arrayDifference(arrayMap(h -> toInt64(h) * 3600, active)))) AS gaps
    FROM key_caller_months
    WHERE (key_id, client_id, ip, user_agent) IN (SELECT key_id, client_id, toIPv6(ip), user_agent FROM rhythm_of)
      AND month >= toStartOfMonth(toDateTime(first_hour * 3600, 'UTC'))
      AND month <= toDate(toDateTime(last_hour * 3600, 'UTC'))
    GROUP BY client_id, ip, user_agent
)`

// selectAgentCadence is selectCadence per client and user agent over all the client's addresses
// (rhythm_of: key_id, client_id, user_agent; arguments: the lookback start and now): the rhythm of
// a job whose address changes from run to run.
const selectAgentCadence = `
WITH intDiv(toInt64(?), 3600000) AS first_hour, intDiv(toInt64(?), 3600000) AS last_hour
SELECT
    client_id,
    '',
    user_agent,
    length(active),
    gaps[1],
    gaps[2]
FROM
(
    SELECT
        client_id, user_agent,
        arrayFilter(h -> h >= first_hour AND h <= last_hour, arraySort(bitmapToArray(groupBitmapMergeState(hours)))) AS active,
        arrayReverseSort(arrayPopFront(arrayDifference(arrayMap(h -> toInt64(h) * 3600, active)))) AS gaps
    FROM key_caller_months
    WHERE (key_id, client_id, user_agent) IN (SELECT key_id, client_id, user_agent FROM rhythm_of)
      AND month >= toStartOfMonth(toDateTime(first_hour * 3600, 'UTC'))
      AND month <= toDate(toDateTime(last_hour * 3600, 'UTC'))
    GROUP BY client_id, user_agent
)`

// selectKeyUsed tells whether a key was ever seen in traffic (key_usage holds one row per key).
const selectKeyUsed = `SELECT count() FROM key_usage WHERE key_id = ?`

// windowArgs returns from's keys, the earliest start and each key's start, as the queries bind them.
func windowArgs(from map[string]time.Time) (keys []string, earliest int64, starts []int64) {
	earliest = math.MaxInt64
	for k, t := range from {
		keys = append(keys, k)
		starts = append(starts, t.UnixMilli())
		earliest = min(earliest, t.UnixMilli())
	}
	return keys, earliest, starts
}

// ownCallers runs query (selectOwnCallers or selectRecentOwnCallers) on each key of keys since
// its window start: the key's sub-callers, from table.
func (d *Lingering) ownCallers(ctx context.Context, table, query string, keys map[string]time.Time, now time.Time) (keyUse, error) {
	ks, earliest, starts := windowArgs(keys)
	return d.readUse(ctx, table, query, len(ks), ks, earliest, ks, starts, now.UnixMilli())
}

// readOfOld runs query (one of the callers queries restricted to old_callers) on the keys of from
// since their window starts, for the sub-callers of each key in callers, sent as the external
// table old_callers.
func (d *Lingering) readOfOld(ctx context.Context, table, query string, from map[string]time.Time, callers map[string][]callerID, now time.Time) (keyUse, error) {
	t, err := ext.NewTable("old_callers", ext.Column("key_id", "String"), ext.Column("client_id", "String"), ext.Column("ip", "String"), ext.Column("user_agent", "String"))
	if err != nil {
		return nil, fmt.Errorf("make the external table of the old keys' callers: %w", err)
	}
	n := 0
	for k, ids := range callers {
		for _, id := range ids {
			if err := t.Append(k, id.client, id.ip, id.ua); err != nil {
				return nil, fmt.Errorf("list the old keys' callers: %w", err)
			}
			n++
		}
	}
	if n == 0 {
		return keyUse{}, nil
	}
	keys, earliest, starts := windowArgs(from)
	return d.readUse(clickhouse.Context(ctx, clickhouse.WithExternalTable(t)), table, query, len(keys), keys, earliest, keys, starts, now.UnixMilli())
}

// readUse runs query (one of the callers queries, on table) on its number of keys with args, and
// collects its rows by key.
func (d *Lingering) readUse(ctx context.Context, table, query string, keys int, args ...any) (keyUse, error) {
	rows, err := d.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read the callers of %d keys from %s: %w", keys, table, err)
	}
	defer rows.Close()
	u := keyUse{}
	for rows.Next() {
		var key string
		var id callerID
		var s subUse
		if err := rows.Scan(&key, &id.client, &id.ip, &id.ua, &s.Requests, &s.Failures, &s.FirstSeen, &s.LastSeen, &s.LastOK); err != nil {
			return nil, fmt.Errorf("read the callers of %d keys from %s: %w", keys, table, err)
		}
		s.FirstSeen, s.LastSeen, s.LastOK = s.FirstSeen.UTC(), s.LastSeen.UTC(), s.LastOK.UTC()
		if s.FirstSeen.Unix() <= 0 {
			s.FirstSeen = time.Time{}
		}
		if s.LastOK.Unix() <= 0 {
			s.LastOK = time.Time{}
		}
		if u[key] == nil {
			u[key] = map[callerID]subUse{}
		}
		u[key][id] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the callers of %d keys from %s: %w", keys, table, err)
	}
	return u, nil
}

// cadences reads the rhythm of each sub-caller of need over the cadence lookback before now, on
// the keys need gives it; and, for those of a client whose own rhythm is unknown (an address seen
// in one hour only), the rhythm of the client's user agent over all its addresses on the same keys
// (with no ip in its callerID).
func (d *Lingering) cadences(ctx context.Context, need map[callerID][]string, now time.Time) (map[callerID]cadence, error) {
	out := map[callerID]cadence{}
	if len(need) == 0 {
		return out, nil
	}
	callers, err := rhythmTable(true)
	if err != nil {
		return nil, err
	}
	for id, ks := range need {
		slices.Sort(ks)
		for _, k := range slices.Compact(ks) {
			if err := callers.Append(k, id.client, id.ip, id.ua); err != nil {
				return nil, fmt.Errorf("list the callers whose rhythm is read: %w", err)
			}
		}
	}
	if err := d.readCadence(ctx, selectCadence, callers, len(need), now, out); err != nil {
		return nil, err
	}
	agents := map[callerID][]string{}
	for id, ks := range need {
		if _, known := out[id].usualGap(); !known && id.client != "" {
			agent := callerID{client: id.client, ua: id.ua}
			agents[agent] = append(agents[agent], ks...)
		}
	}
	if len(agents) == 0 {
		return out, nil
	}
	if callers, err = rhythmTable(false); err != nil {
		return nil, err
	}
	for id, ks := range agents {
		slices.Sort(ks)
		for _, k := range slices.Compact(ks) {
			if err := callers.Append(k, id.client, id.ua); err != nil {
				return nil, fmt.Errorf("list the user agents whose rhythm is read: %w", err)
			}
		}
	}
	if err := d.readCadence(ctx, selectAgentCadence, callers, len(agents), now, out); err != nil {
		return nil, err
	}
	return out, nil
}

// rhythmTable is the external table rhythm_of that selectCadence (withIP) or selectAgentCadence
// reads the callers from.
func rhythmTable(withIP bool) (*ext.Table, error) {
	cols := []func(*ext.Table) error{ext.Column("key_id", "String"), ext.Column("client_id", "String")}
	if withIP {
		cols = append(cols, ext.Column("ip", "String"))
	}
	t, err := ext.NewTable("rhythm_of", append(cols, ext.Column("user_agent", "String"))...)
	if err != nil {
		return nil, fmt.Errorf("make the external table of callers whose rhythm is read: %w", err)
	}
	return t, nil
}

// readCadence runs query (selectCadence or selectAgentCadence) with the external table of its n
// callers, and adds the rhythms it reads to out.
func (d *Lingering) readCadence(ctx context.Context, query string, callers *ext.Table, n int, now time.Time, out map[callerID]cadence) error {
	from := now.Add(-time.Duration(d.cfg.CadenceLookback))
	rows, err := d.conn.Query(clickhouse.Context(ctx, clickhouse.WithExternalTable(callers)), query, from.UnixMilli(), now.UnixMilli())
	if err != nil {
		return fmt.Errorf("read the rhythm of %d callers since %s from key_caller_months: %w", n, from.Format(time.RFC3339), err)
	}
	defer rows.Close()
	for rows.Next() {
		var id callerID
		var hours uint64
		var longest, second int64
		if err := rows.Scan(&id.client, &id.ip, &id.ua, &hours, &longest, &second); err != nil {
			return fmt.Errorf("read the rhythm of callers from key_caller_months: %w", err)
		}
		out[id] = cadence{ActiveHours: int(hours), Longest: time.Duration(longest) * time.Second, Second: time.Duration(second) * time.Second}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the rhythm of callers from key_caller_months: %w", err)
	}
	return nil
}
