package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
)

// IPHours is the job that finalizes each completed hour's distinct addresses per key from
// key_ips_1h (a state per key and hour) into key_ip_hours (plain counts), which the leak detector's
// fan-out baseline reads. Its first run backfills the baseline once; later runs add the hours
// completed since the last one finalized. The leak detector reads the hours not finalized yet from
// key_ips_1h itself, so the job's schedule sets the cost of the detector's reads, never its results.
type IPHours struct {
	conn driver.Conn
	// span is how far back a run finalizes: the leak detector's window and baseline.
	span time.Duration
}

// NewIPHours returns the job finalizing the hours the leak detector configured by cfg reads.
func NewIPHours(conn driver.Conn, cfg config.Leak) *IPHours {
	return &IPHours{conn: conn, span: time.Duration(cfg.Window) + time.Duration(cfg.Baseline)}
}

// Name is the job's name in logs.
func (j *IPHours) Name() string { return "ip_hours" }

// ipHoursSchedule runs the job a minute into every hour, when the hour before has completed.
const ipHoursSchedule = "0 1 * * * *"

// leakInsertIPHours: arguments: first hour, end (exclusive), whole hours.
const leakInsertIPHours = `
INSERT INTO key_ip_hours (hour, key_id, distinct_ips)
SELECT hour, key_id, toUInt32(uniqMerge(distinct_ips))
FROM key_ips_1h
WHERE hour >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
GROUP BY hour, key_id`

// Run finalizes the completed hours before now not finalized yet, back to the start of the
// baseline as of now.
func (j *IPHours) Run(ctx context.Context, now time.Time) error {
	current := now.Truncate(time.Hour)
	var recorded time.Time
	if err := j.conn.QueryRow(ctx, leakSelectLastIPHour).Scan(&recorded); err != nil {
		return fmt.Errorf("read last finalized hour from key_ip_hours: %w", err)
	}
	from := now.Add(-j.span).Truncate(time.Hour)
	if next := recorded.UTC().Add(time.Hour); next.After(from) {
		from = next
	}
	if !from.Before(current) {
		return nil
	}
	if err := j.conn.Exec(ctx, leakInsertIPHours, from.UnixMilli(), current.UnixMilli()); err != nil {
		return fmt.Errorf("finalize distinct addresses of hours %s to %s into key_ip_hours: %w",
			from.Format(time.RFC3339), current.Format(time.RFC3339), err)
	}
	return nil
}
