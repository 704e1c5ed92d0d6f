package rotation

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// selectEvents reads every lifecycle event up to a time (Unix ms). The table holds a handful of
// rows per key, so the whole history is read and folded in memory; a repeated delivery of one
// event is read once.
const selectEvents = `
SELECT ts, toString(type), key_id, client_id, new_key_id, grace_until, reason, version, expires_at, scopes
FROM key_lifecycle_events
WHERE ts <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
GROUP BY ts, type, key_id, client_id, new_key_id, grace_until, reason, version, expires_at, scopes
ORDER BY ts`

// Querier is the part of a ClickHouse connection the model is read through.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// Load reads every lifecycle event from ClickHouse and builds the model.
func Load(ctx context.Context, db Querier) (*Model, error) {
	return LoadAsOf(ctx, db, time.Unix(1<<40, 0))
}

// LoadAsOf builds the model from the lifecycle events up to at (inclusive): the keys and
// rotations as they stood then.
func LoadAsOf(ctx context.Context, db Querier, at time.Time) (*Model, error) {
	rows, err := db.Query(ctx, selectEvents, at.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("rotation: read key_lifecycle_events: %w", err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var e Event
		var grace, expires *time.Time
		if err := rows.Scan(&e.TS, &e.Type, &e.KeyID, &e.ClientID, &e.NewKeyID, &grace, &e.Reason, &e.Version, &expires, &e.Scopes); err != nil {
			return nil, fmt.Errorf("rotation: read key_lifecycle_events: %w", err)
		}
		if grace != nil {
			e.GraceUntil = grace.UTC()
		}
		if expires != nil {
			e.ExpiresAt = expires.UTC()
		}
		if len(e.Scopes) == 0 {
			e.Scopes = nil
		}
		e.TS = e.TS.UTC()
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rotation: read key_lifecycle_events: %w", err)
	}
	return Build(events), nil
}

// selectEventsVersion tells whether key_lifecycle_events changed: its rows and the sum of their
// times, read from the ts column alone.
const selectEventsVersion = `SELECT count(), sum(toUnixTimestamp64Milli(ts)) FROM key_lifecycle_events`

// Models loads the model and keeps it while key_lifecycle_events holds the same events, so that
// the detectors of a cycle, and the cycles between two lifecycle events, share one read of the
// whole history. Those who load through it share the model and must not change it. The zero
// value is not usable; NewModels makes one.
type Models struct {
	db      Querier
	mu      sync.Mutex
	version [2]int64
	model   *Model
}

// NewModels returns a Models reading db.
func NewModels(db Querier) *Models { return &Models{db: db} }

// Load returns the model of every lifecycle event stored, reading them again only when they
// changed since the last read.
func (m *Models) Load(ctx context.Context) (*Model, error) {
	rows, err := m.db.Query(ctx, selectEventsVersion)
	if err != nil {
		return nil, fmt.Errorf("rotation: read the version of key_lifecycle_events: %w", err)
	}
	var version [2]int64
	var n uint64
	if rows.Next() {
		err = rows.Scan(&n, &version[1])
	}
	if err == nil {
		err = rows.Err()
	}
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("rotation: read the version of key_lifecycle_events: %w", err)
	}
	version[0] = int64(n)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.model != nil && version == m.version {
		return m.model, nil
	}
	model, err := Load(ctx, m.db)
	if err != nil {
		return nil, err
	}
	m.model, m.version = model, version
	return model, nil
}
