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
// fan-out baseline reads. An hour is finalized only once detect.leak.allowed_lateness has passed
// since it ended, so that events still on their way count; its first run backfills the baseline
// once, and every run finalizes the hours since the last one finalized and finalizes again those of
// the last ipHoursRecheck whose count changed since (events that arrived later still), which
// replaces the earlier count (key_ip_hours is a ReplacingMergeTree; the detector reads the highest
// count of an hour until the table merges). The leak detector reads the hours not finalized yet
// from key_ips_1h itself, so the job's schedule sets the cost of the detector's reads, never its
// results.
type IPHours struct {
	conn driver.Conn
	// span is how far back a run finalizes: the leak detector's window and baseline.
	span time.Duration
	// lateness is detect.leak.allowed_lateness.
	lateness time.Duration
}

// NewIPHours returns the job finalizing the hours the leak detector configured by cfg reads.
func NewIPHours(conn driver.Conn, cfg config.Leak) *IPHours {
	return &IPHours{conn: conn, span: time.Duration(cfg.Window) + time.Duration(cfg.Baseline), lateness: time.Duration(cfg.AllowedLateness)}
}

// Name is the job's name in logs.
func (j *IPHours) Name() string { return "ip_hours" }

// ipHoursSchedule runs the job a minute into every hour; an hour is finalized by the first run at
// least allowed_lateness after its end (with the default 10 minutes, by the run 1 h 1 min after it).
const ipHoursSchedule = "0 1 * * * *"

// ipHoursRecheck is how far back each run finalizes again the hours whose count changed: events
// that arrive up to a day late (a gateway's log shipper or the consumer catching up after an
// outage) reach the baseline; the recheck reads a day of key_ips_1h states once an hour. Later ones
// are missing from one hour of a 30-day baseline only.
const ipHoursRecheck = 24 * time.Hour

// leakInsertIPHours writes the hours' counts that key_ip_hours does not hold yet, as they are:
// hours not finalized before, and finalized hours whose count changed. Arguments: first hour, end
// (exclusive), whole hours; the same again.
const leakInsertIPHours = `
INSERT INTO key_ip_hours (hour, key_id, distinct_ips)
SELECT hour, key_id, toUInt32(uniqMerge(distinct_ips)) AS n
FROM key_ips_1h
WHERE hour >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
GROUP BY hour, key_id
HAVING (key_id, hour, n) NOT IN
(
    SELECT key_id, hour, distinct_ips
    FROM key_ip_hours
    WHERE hour >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
)`

// Run finalizes the hours that ended at least allowed_lateness before now and are not finalized
// yet, back to the start of the baseline as of now, and finalizes again those of the last
// ipHoursRecheck whose count changed.
func (j *IPHours) Run(ctx context.Context, now time.Time) error {
	end := now.Add(-j.lateness).Truncate(time.Hour) // the hours before it ended by now - lateness
	var recorded time.Time
	if err := j.conn.QueryRow(ctx, leakSelectLastIPHour).Scan(&recorded); err != nil {
		return fmt.Errorf("read last finalized hour from key_ip_hours: %w", err)
	}
	oldest := now.Add(-j.span).Truncate(time.Hour)
	from := later(oldest, earlier(recorded.UTC().Add(time.Hour), end.Add(-ipHoursRecheck)))
	if !from.Before(end) {
		return nil
	}
	if err := j.conn.Exec(ctx, leakInsertIPHours, from.UnixMilli(), end.UnixMilli(), from.UnixMilli(), end.UnixMilli()); err != nil {
		return fmt.Errorf("finalize distinct addresses of hours %s to %s into key_ip_hours: %w",
			from.Format(time.RFC3339), end.Format(time.RFC3339), err)
	}
	return nil
}
