package main

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// generateEvents inserts the events numbered [start, start+rows) of the population, computed by
// ClickHouse from the row number alone, so that the load is fast; the rollup views
// (ingest.CreateRollupViews) build the rollups ingest builds.
//
// Each chunk spreads its rows over the same days in order (row n falls on day
// (n-start)·days/rows), so an insert block touches few daily partitions; within the day the
// second follows a daily cycle (a triangle peaking at noon UTC over a uniform floor). Key
// popularity is skewed (key k draws ~1/(2√(k·keys)) of the traffic, key 0 about 1%). A client's
// calls come from its own small set of IPs (1–5 in a /24 of 11.0.0.0/8, on one of ten networks,
// in one of ten countries); every 250th client (from the 17th) is "mobile": 3,000 addresses of
// 100.0.0.0/8 on three carriers. Outcomes are 97% ok, the rest invalid_key, rate_limited, error,
// forbidden, expired_key and revoked_key. A rotating client's traffic is on its old key until the
// rotation's migration time, then on the new key, except its stragglers', which stay on the old
// key and fail once it is retired or revoked. The chunk's last leak_rows rows instead fall in the
// last hour on one of the leak keys, from a foreign network (AS9009, RO) and many addresses.
const generateEvents = `
INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip, asn, as_org, country,
    user_agent, method, route, request_id, gateway, src_topic, src_partition, src_offset)
WITH
    toInt64(?)                  AS now_s,       -- the benchmark's now, Unix seconds
    toInt64(?)                  AS days,
    toUInt64(?)                 AS keys,
    toUInt64(?)                 AS clients,
    toUInt64(?)                 AS rotations,
    toUInt64(?)                 AS chunk_start,
    toUInt64(?)                 AS chunk_rows,
    toUInt64(?)                 AS leak_rows,
    toUInt64(?)                 AS leak_keys,
    CAST(? AS Array(Int64))     AS migrated_at, -- per rotation, Unix seconds
    CAST(? AS Array(Int64))     AS finished_at, -- per rotation, Unix seconds; 0 while running
    CAST(? AS Array(String))    AS fail_outcome, -- per rotation: what the old key answers once finished

    -- independent draws per row
    intHash64(number)           AS ha,
    intHash64(ha)               AS hb,
    intHash64(hb)               AS hc,
    intHash64(hc)               AS hd,

    toUInt64(keys * pow((ha % 1000000) / 1000000, 2)) AS drawn_key,
    drawn_key % clients         AS j,
    number >= chunk_start + chunk_rows - leak_rows AS leak,

    intDiv(now_s, 86400) * 86400 - (days - 1) * 86400 AS first_day,
    toInt64(intDiv((number - chunk_start) * days, chunk_rows)) AS day,
    if(bitShiftRight(ha, 32) % 10 < 3, toInt64(hb % 86400), toInt64(hb % 43200 + bitShiftRight(hb, 32) % 43200)) AS second_of_day,
    first_day + day * 86400 + second_of_day AS t_day,
    if(leak, now_s - 1 - toInt64(hb % 3600), if(t_day >= now_s, t_day - days * 86400, t_day)) AS t,

    j % 250 = 17                AS mobile,
    if(mobile, 3000, 1 + intDiv(j, 5) % 5) AS ip_count,
    hc % ip_count               AS ip_idx,

    NOT leak AND j % 5 = 0 AND intDiv(j, 5) < rotations AND drawn_key < 2 * clients AS rotating,
    intDiv(j, 5) + 1            AS r,           -- 1-based index into the rotation arrays
    r % 3 = 1 AND ip_idx = 0    AS straggler,
    multiIf(leak, 3 + 10 * (ha % leak_keys), NOT rotating, drawn_key,
            t < migrated_at[r] OR straggler, j, j + clients) AS k,
    rotating AND k = j AND finished_at[r] > 0 AND t >= finished_at[r] AS failing,

    bitShiftRight(hc, 32) % 1000 AS o,
    multiIf(failing, fail_outcome[r],
            o < 970, 'ok', o < 980, 'invalid_key', o < 988, 'rate_limited', o < 993, 'error',
            o < 996, 'forbidden', o < 998, 'expired_key', 'revoked_key') AS outcome_name,

    [16509, 14618, 15169, 8075, 24940, 16276, 3320, 7922, 13335, 20940] AS home_asns,
    ['AMAZON-02', 'AMAZON-AES', 'GOOGLE', 'MICROSOFT-CORP-MSN-AS-BLOCK', 'Hetzner Online GmbH', 'OVH SAS',
     'Deutsche Telekom AG', 'COMCAST-7922', 'CLOUDFLARENET', 'Akamai International B.V.'] AS home_orgs,
    ['US', 'DE', 'FR', 'GB', 'NL', 'IE', 'JP', 'BR', 'IN', 'SG'] AS home_countries,
    [21928, 7018, 6167]         AS carrier_asns,
    ['T-MOBILE-AS21928', 'ATT-INTERNET4', 'CELLCO-PART'] AS carrier_orgs,
    multiIf(leak, 1, mobile, 2, 3) AS net_kind, -- 1 foreign, 2 carrier, 3 home network
    ['acme-sdk-python/4.2.1 python-requests/2.31.0', 'acme-sdk-node/7.14.0 axios/1.6.8',
     'acme-sdk-java/11.3.0 okhttp/4.12.0', 'acme-sdk-go/3.8.2 Go-http-client/1.1',
     'Apache-HttpClient/5.3.1 (Java/17.0.11) billing-reconciler/2024.05.02', 'Terraform/1.8.2 terraform-provider-acme/2.19.0',
     'okhttp/4.12.0 (Android 13; SM-S918B) com.northwind.mobile/5.31.0',
     'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148'] AS agents,
    ['GET', 'GET', 'GET', 'GET', 'POST', 'GET', 'PATCH', 'POST', 'POST', 'GET'] AS methods,
    ['/v1/prices', '/v1/prices/{price_id}', '/v1/customers/{customer_id}', '/v1/customers/{customer_id}/invoices',
     '/v1/orders', '/v1/orders/{order_id}', '/v1/orders/{order_id}', '/v1/payments/intents',
     '/v1/payments/intents/{intent_id}/confirm', '/v2/inventory/warehouses/{warehouse_id}/stock'] AS routes,
    ['edge-eu-1', 'edge-eu-2', 'edge-us-1', 'edge-us-2', 'edge-ap-1', 'edge-sa-1'] AS gateways
SELECT
    fromUnixTimestamp64Milli(t * 1000 + toInt64(bitShiftRight(hd, 32) % 1000), 'UTC'),
    concat('kid_bench_', leftPad(toString(k), 5, '0')),
    '',
    concat('client_bench_', leftPad(toString(k % clients), 4, '0')),
    outcome_name,
    multiIf(outcome_name = 'ok', 200, outcome_name IN ('invalid_key', 'expired_key', 'revoked_key'), 401,
            outcome_name = 'forbidden', 403, outcome_name = 'rate_limited', 429, 500),
    toIPv6(toIPv4(multiIf(net_kind = 1, 765132800 + hc % 65536,          -- 45.155.0.0/16
                          net_kind = 2, 1677721600 + j * 4096 + ip_idx,   -- 100.0.0.0/8
                          184549376 + j * 256 + ip_idx))),                -- 11.0.0.0/8
    multiIf(net_kind = 1, 9009, net_kind = 2, carrier_asns[1 + ip_idx % 3], home_asns[1 + j % 10]),
    multiIf(net_kind = 1, 'M247 Europe SRL', net_kind = 2, carrier_orgs[1 + ip_idx % 3], home_orgs[1 + j % 10]),
    multiIf(net_kind = 1, 'RO', net_kind = 2, 'US', home_countries[1 + intDiv(j, 10) % 10]),
    multiIf(leak, 'python-requests/2.31.0', mobile, agents[7 + bitShiftRight(hd, 8) % 2],
            agents[1 + (j + (bitShiftRight(hd, 8) % 10 = 0)) % 6]),    -- one SDK, 10% a second one
    methods[1 + hd % 10],
    routes[1 + hd % 10],
    concat('r-', toString(number)),
    gateways[1 + j % 6],
    'bench',
    0,
    number
FROM numbers(?, ?)`

// leakShare: one row in leakShare of every chunk is a leak row (its last rows), so that the leak
// keys' burst grows with the volume like everything else.
const leakShare = 20_000

// insertLifecycle is the key lifecycle events' insert (rows appended as a batch).
const insertLifecycle = `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_topic, src_partition, src_offset)`

// loader inserts the population's events chunk by chunk.
type loader struct {
	conn  driver.Conn
	pop   population
	days  int
	chunk int
}

// load inserts the events numbered [from, to) in chunks and returns how long it took.
func (l loader) load(ctx context.Context, from, to int) (time.Duration, error) {
	migrated, finished, failOutcome := l.pop.rotationArrays()
	// Nothing here is a retry: deduplicating blocks would only cost time. The materialized views
	// cost most of the insert; max_insert_threads runs them on every core.
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplicate": 0, "max_insert_threads": runtime.NumCPU(),
	}))
	start := time.Now()
	for at := from; at < to; at += l.chunk {
		rows := min(l.chunk, to-at)
		t0 := time.Now()
		if err := l.conn.Exec(ctx, generateEvents,
			l.pop.now.Unix(), l.days, l.pop.keys, l.pop.clients, len(l.pop.rotations),
			at, rows, rows/leakShare, leakKeys, migrated, finished, failOutcome, at, rows); err != nil {
			return 0, fmt.Errorf("insert events %d to %d: %w", at, at+rows, err)
		}
		secs := time.Since(t0).Seconds()
		logf("  events %s to %s: %.1fs (%s events/s)", thousands(uint64(at)), thousands(uint64(at+rows)), secs, thousands(uint64(float64(rows)/secs)))
	}
	return time.Since(start), nil
}

// insertLifecycleEvents stores the population's lifecycle events in one batch.
func insertLifecycleEvents(ctx context.Context, conn driver.Conn, pop population) (int, error) {
	b, err := conn.PrepareBatch(ctx, insertLifecycle)
	if err != nil {
		return 0, fmt.Errorf("insert lifecycle events: %w", err)
	}
	defer b.Abort()
	events := pop.lifecycleEvents()
	for i, e := range events {
		if err := b.Append(e.ts, e.typ, e.key, e.client, e.newKey, e.graceUntil, e.reason, "bench", int32(0), int64(i)); err != nil {
			return 0, fmt.Errorf("insert lifecycle events: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return 0, fmt.Errorf("insert lifecycle events: %w", err)
	}
	return len(events), nil
}
