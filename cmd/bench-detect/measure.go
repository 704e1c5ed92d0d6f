package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/detect"
)

const (
	countMerges = `SELECT count() FROM system.merges WHERE database = ?`
	// tableSizes reads the active parts of every table: auth_events, the rollups the materialized
	// views fill (whichever the migrations define) and the small tables.
	tableSizes = `
SELECT table, sum(rows), count(), sum(bytes_on_disk), sum(data_uncompressed_bytes)
FROM system.parts
WHERE database = ? AND active
GROUP BY table
ORDER BY sum(bytes_on_disk) DESC`
)

// settle waits until the database's background merges are done, at most limit, and returns how
// many were still running. The benchmark never forces merges (OPTIMIZE): production does not.
func settle(ctx context.Context, conn driver.Conn, db string, limit time.Duration) (uint64, error) {
	deadline := time.Now().Add(limit)
	for {
		var n uint64
		if err := conn.QueryRow(ctx, countMerges, db).Scan(&n); err != nil {
			return 0, fmt.Errorf("count merges: %w", err)
		}
		if n == 0 || time.Now().After(deadline) {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// cycle is one full detection cycle: its wall time, and each detector's time and findings in the
// engine's order.
type cycle struct {
	total     time.Duration
	detectors []time.Duration
	findings  []int
}

// runCycles runs one warm-up cycle (the jobs, then the detectors) and then n measured ones (the
// detectors), all as of now.
func runCycles(ctx context.Context, engine *detect.Engine, now time.Time, n int) ([]cycle, error) {
	if err := engine.RunJobs(ctx, now); err != nil {
		return nil, fmt.Errorf("warm-up jobs: %w", err)
	}
	var out []cycle
	for i := range n + 1 {
		start := time.Now()
		runs, err := engine.RunOnce(ctx, now)
		total := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("detection cycle %d: %w", i, err)
		}
		if i == 0 {
			continue // warm-up
		}
		c := cycle{total: total}
		for _, r := range runs {
			c.detectors = append(c.detectors, r.Finished.Sub(r.Started))
			c.findings = append(c.findings, len(r.Findings))
		}
		logf("  cycle %d: %s", i, seconds(total))
		out = append(out, c)
	}
	return out, nil
}

// timing is the median and the minimum of a series of durations.
type timing struct{ median, min time.Duration }

func timingOf(ds []time.Duration) timing {
	s := slices.Clone(ds)
	slices.Sort(s)
	mid := len(s) / 2
	med := s[mid]
	if len(s)%2 == 0 {
		med = (s[mid-1] + s[mid]) / 2
	}
	return timing{median: med, min: s[0]}
}

// totalTiming is the timing of the cycles' wall time; detectorTiming that of detector i.
func totalTiming(cs []cycle) timing {
	ds := make([]time.Duration, len(cs))
	for i, c := range cs {
		ds[i] = c.total
	}
	return timingOf(ds)
}

func detectorTiming(cs []cycle, i int) timing {
	ds := make([]time.Duration, len(cs))
	for j, c := range cs {
		ds[j] = c.detectors[i]
	}
	return timingOf(ds)
}

// tableSize is what a table's active parts hold.
type tableSize struct {
	table                string
	rows, parts          uint64
	onDisk, uncompressed uint64
}

// sizes returns the sizes of the database's tables, largest first.
func sizes(ctx context.Context, conn driver.Conn, db string) ([]tableSize, error) {
	rows, err := conn.Query(ctx, tableSizes, db)
	if err != nil {
		return nil, fmt.Errorf("table sizes: %w", err)
	}
	defer rows.Close()
	var out []tableSize
	for rows.Next() {
		var t tableSize
		if err := rows.Scan(&t.table, &t.rows, &t.parts, &t.onDisk, &t.uncompressed); err != nil {
			return nil, fmt.Errorf("table sizes: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("table sizes: %w", err)
	}
	return out, nil
}
