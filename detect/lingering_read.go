package detect

import (
	"context"
	"fmt"
	"math"
	"time"
)

// selectCallers reads who called each key, per caller: a client over all its addresses and user
// agents (with its 5 busiest of each), or an (IP, user agent) pair when the client is unknown.
// Arguments: the keys, the earliest window start (unix seconds; prunes partitions), then the keys
// again with each one's own window start. Windows start at the top of the hour of their start (the
// rollup's granularity), so a caller's counts may include up to an hour before it; last_seen is
// exact. IPv4 addresses are shown without their ::ffff: prefix. The query reads about every row
// since the earliest window start: a granule holds the rows of many keys, so key_id IN prunes
// little (20M stored events, 10,000 keys, 500 rotations: 2.4M rows read, ~0.25 s).
const selectCallers = `
SELECT
    key_id,
    client_id,
    if(client_id = '', ip_text, '') AS caller_ip,
    if(client_id = '', user_agent, '') AS caller_ua,
    sum(requests),
    sum(failures),
    min(first_seen),
    max(last_seen),
    arraySlice(arraySort((v, n) -> (-n, v), (sumMap([ip_text], [requests]) AS ips).1, ips.2), 1, 5),
    arraySlice(arraySort((n, v) -> (-n, v), ips.2, ips.1), 1, 5),
    arraySlice(arraySort((v, n) -> (-n, v), (sumMap([user_agent], [requests]) AS uas).1, uas.2), 1, 5),
    arraySlice(arraySort((n, v) -> (-n, v), uas.2, uas.1), 1, 5)
FROM
(
    SELECT
        key_id,
        client_id,
        replaceRegexpOne(IPv6NumToString(ip), '^::ffff:([0-9.]+)$', '\\1') AS ip_text,
        user_agent,
        sum(requests) AS requests,
        sum(failures) AS failures,
        min(first_seen) AS first_seen,
        max(last_seen) AS last_seen
    FROM key_callers_1h
    WHERE key_id IN ?
      AND hour >= toStartOfHour(toDateTime(?, 'UTC'))
      AND hour >= toStartOfHour(toDateTime(transform(toString(key_id), ?, ?, 0), 'UTC'))
    GROUP BY key_id, client_id, ip, user_agent
)
GROUP BY key_id, client_id, caller_ip, caller_ua`

// selectKeyUsed tells whether a key was ever seen in traffic (key_usage holds one row per key).
const selectKeyUsed = `SELECT count() FROM key_usage WHERE key_id = ?`

// callers reads the callers of each key of from since its window start, in one query.
func (d *Lingering) callers(ctx context.Context, from map[string]time.Time) (usage, error) {
	keys := make([]string, 0, len(from))
	starts := make([]int64, 0, len(from))
	earliest := int64(math.MaxInt64)
	for k, t := range from {
		keys = append(keys, k)
		starts = append(starts, t.Unix())
		earliest = min(earliest, t.Unix())
	}
	rows, err := d.conn.Query(ctx, selectCallers, keys, earliest, keys, starts)
	if err != nil {
		return nil, fmt.Errorf("read callers of %d keys from key_callers_1h: %w", len(keys), err)
	}
	defer rows.Close()
	u := usage{}
	for rows.Next() {
		var key string
		var c Caller
		var ipNames, uaNames []string
		var ipCounts, uaCounts []uint64
		if err := rows.Scan(&key, &c.ClientID, &c.IP, &c.UserAgent, &c.Requests, &c.Failures, &c.FirstSeen, &c.LastSeen,
			&ipNames, &ipCounts, &uaNames, &uaCounts); err != nil {
			return nil, fmt.Errorf("read callers from key_callers_1h: %w", err)
		}
		c.FirstSeen, c.LastSeen = c.FirstSeen.UTC(), c.LastSeen.UTC()
		if c.ClientID != "" {
			c.TopIPs, c.TopUserAgents = counts(ipNames, ipCounts), counts(uaNames, uaCounts)
		}
		if u[key] == nil {
			u[key] = map[callerID]*Caller{}
		}
		u[key][callerID{c.ClientID, c.IP, c.UserAgent}] = &c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read callers from key_callers_1h: %w", err)
	}
	return u, nil
}

func counts(values []string, n []uint64) []Count {
	out := make([]Count, len(values))
	for i, v := range values {
		out[i] = Count{v, n[i]}
	}
	return out
}
