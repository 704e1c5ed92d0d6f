package detect

import (
	"context"
	"errors"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// All returns every detector configured by cfg, reading through conn, with its schedule.
// They share one rotation model, read again only when the lifecycle events change.
func All(conn driver.Conn, cfg config.Detect) []Scheduled {
	models := rotation.NewModels(conn)
	lingering, spike, leak := NewLingering(conn, cfg.Lingering), NewSpike(conn, cfg.Spike), NewLeak(conn, cfg.Leak)
	hygiene := NewHygiene(conn, cfg.Hygiene).WithScopes(cfg.Leak)
	lingering.models, spike.models, leak.models, hygiene.models = models, models, models, models
	return []Scheduled{
		{lingering, cfg.Lingering.Schedule},
		{spike, cfg.Spike.Schedule},
		{leak, cfg.Leak.Schedule},
		{hygiene, cfg.Hygiene.Schedule},
	}
}

// Jobs returns the jobs that keep what the detectors configured by cfg read, reading and writing
// through conn, with their schedules: IPHours when the leak detector runs.
func Jobs(conn driver.Conn, cfg config.Detect) []ScheduledJob {
	if cfg.Leak.Schedule == "" {
		return nil
	}
	return []ScheduledJob{{NewIPHours(conn, cfg.Leak), ipHoursSchedule}}
}

// ErrUnknownKey is returned for a key that neither lifecycle events nor stored traffic mention.
var ErrUnknownKey = errors.New("unknown key: no lifecycle events and no stored traffic")

// earlier and later are the earlier and the later of two times, as every detector compares them.
func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// queryStrings runs q and returns its single String column.
func queryStrings(ctx context.Context, conn driver.Conn, q string, args ...any) ([]string, error) {
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
