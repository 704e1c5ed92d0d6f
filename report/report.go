// Package report owns the rotation compliance report: gathering, per key, its age, rotations,
// stragglers at retirement, emergency revokes and rollbacks, and printing them as a table, CSV or JSON.
// It does not fold lifecycle events into keys and rotations (rotation) nor judge live traffic (detect).
package report

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/rotation"
)

// Querier is the part of a ClickHouse connection the report is read through.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// Options say which window the report covers and how stragglers are judged.
type Options struct {
	Since, Until time.Time // the window; Until is also the instant the report is made as of
	// QuietFor is detect.lingering.quiet_for: a caller that moved to the new key still counted as
	// a straggler when it had used the old key within this long before the retirement.
	QuietFor time.Duration
}

// Row is one key in the report. The JSON names are the CSV header and are stable.
type Row struct {
	KeyID    string `json:"key_id"`
	ClientID string `json:"client_id"`
	// State is the key's state at the end of the window: active, retiring, retired or revoked.
	State     string     `json:"state"`
	CreatedAt *time.Time `json:"created_at"` // nil when no key.created (nor introducing rotation) was seen
	// AgeSeconds runs from CreatedAt to the end of the window, or to when the key was retired or
	// revoked if that came first.
	AgeSeconds *int64 `json:"age_seconds"`
	// Version and ExpiresAt are the latest the key's lifecycle events stated ("" and nil when none did).
	Version   string     `json:"version"`
	ExpiresAt *time.Time `json:"expires_at"`
	// The key's last rotation: the latest rotation retiring this key that started by the end of the window.
	LastRotationAt      *time.Time `json:"last_rotation_at"`
	RotationID          string     `json:"rotation_id"`
	RetiredAt           *time.Time `json:"retired_at"`            // when the last rotation retired or revoked the key; nil while it runs
	RotationTookSeconds *int64     `json:"rotation_took_seconds"` // RetiredAt − LastRotationAt
	// RotationsCompleted counts the rotations of this key (as the old key) finished within the window.
	RotationsCompleted int `json:"rotations_completed"`
	// StragglersAtRetirement counts Stragglers; nil while the last rotation runs.
	StragglersAtRetirement *int     `json:"stragglers_at_retirement"`
	Stragglers             []string `json:"stragglers"` // latest old-key call first
	EmergencyRevokes       int      `json:"emergency_revokes"`
	Rollbacks              int      `json:"rollbacks"`
}

// Action kinds the report counts (the kinds of the actions table).
const (
	kindRevoke      = "revoke"
	kindExtendGrace = "extend_grace"
	kindReactivate  = "reactivate"
)

// selectCallers reads, per caller of a rotation's old key since the rotation started, the last
// call with the old key and the last call with the new key made by the time the old key was
// retired. A caller is the client, or (IP, user agent) when the gateway resolved none, as in the
// lingering detector. key_caller_hours is hourly, so "by the time" is to the hour a call fell in, and times are
// to the second.
// Arguments: old key, new key, retired (ms), old key, new key, started (ms), until (ms), started (ms).
const selectCallers = `
SELECT
    client_id,
    if(client_id = '', replaceRegexpOne(IPv6NumToString(ip), '^::ffff:([0-9.]+)$', '\\1'), '') AS caller_ip,
    if(client_id = '', user_agent, '') AS caller_ua,
    maxIf(last_seen, key_id = ?) AS old_last,
    maxIf(last_seen, key_id = ? AND first_seen <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AS new_last
FROM key_caller_hours
WHERE key_id IN (?, ?)
  AND hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
  AND first_seen <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
GROUP BY client_id, caller_ip, caller_ua
HAVING old_last >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
ORDER BY old_last DESC, client_id, caller_ip, caller_ua`

// Rotations gathers the report: one row per key that has lifecycle events and lived within the
// window (created by its end, and not retired or revoked before its start), by client, creation
// time and key id.
func Rotations(ctx context.Context, db Querier, opts Options) ([]Row, error) {
	m, err := rotation.LoadAsOf(ctx, db, opts.Until)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	actions, err := action.ReadSent(ctx, db)
	if err != nil {
		return nil, err
	}
	byKey := map[string][]*rotation.Rotation{}
	for _, r := range m.Rotations { // by start time
		if !r.Started.After(opts.Until) {
			byKey[r.OldKeyID] = append(byKey[r.OldKeyID], r)
		}
	}
	rows := []Row{}
	for _, k := range m.SortedKeys() {
		row, ok := keyRow(k, byKey[k.ID], opts)
		if !ok {
			continue
		}
		if n := len(byKey[k.ID]); n > 0 {
			if r := byKey[k.ID][n-1]; finishedBy(r, opts.Until) {
				callers, err := stragglers(ctx, db, r, opts)
				if err != nil {
					return nil, err
				}
				row.Stragglers, row.StragglersAtRetirement = callers, ptr(len(callers))
			}
		}
		row.EmergencyRevokes, row.Rollbacks = countActions(k, actions, opts)
		rows = append(rows, row)
	}
	slices.SortStableFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.ClientID, b.ClientID), compareTimes(a.CreatedAt, b.CreatedAt), cmp.Compare(a.KeyID, b.KeyID))
	})
	return rows, nil
}

// keyRow is k's row from its lifecycle as of opts.Until, or false when k did not live in the window.
// rs are the rotations retiring k that started by then, by start time.
func keyRow(k *rotation.Key, rs []*rotation.Rotation, opts Options) (Row, bool) {
	if !k.Created.IsZero() && k.Created.After(opts.Until) {
		return Row{}, false
	}
	row := Row{KeyID: k.ID, ClientID: k.ClientID, State: string(rotation.Active), Stragglers: []string{}}
	row.Version = k.Version
	if !k.ExpiresAt.IsZero() {
		row.ExpiresAt = ptr(k.ExpiresAt)
	}
	var ended time.Time // when the key was retired or revoked, as of Until
	if len(rs) > 0 {
		r := rs[len(rs)-1]
		row.LastRotationAt, row.RotationID, row.State = ptr(r.Started), r.ID, string(rotation.Retiring)
		if finishedBy(r, opts.Until) {
			ended = r.Finished
			row.RetiredAt, row.RotationTookSeconds = ptr(r.Finished), ptr(seconds(r.Finished.Sub(r.Started)))
			row.State = string(lastStep(r, opts.Until))
		}
	}
	for _, r := range rs {
		if finishedBy(r, opts.Until) && !r.Finished.Before(opts.Since) {
			row.RotationsCompleted++
		}
	}
	// A key retired or revoked outside a rotation (or revoked after its rotation retired it).
	if (k.State == rotation.Retired || k.State == rotation.Revoked) && !k.Updated.After(opts.Until) {
		if ended.IsZero() || k.Updated.Before(ended) {
			ended = k.Updated
		}
		row.State = string(k.State)
	}
	if !ended.IsZero() && ended.Before(opts.Since) {
		return Row{}, false
	}
	if !k.Created.IsZero() {
		end := opts.Until
		if !ended.IsZero() {
			end = ended
		}
		row.CreatedAt, row.AgeSeconds = ptr(k.Created), ptr(seconds(end.Sub(k.Created)))
	}
	return row, true
}

// finishedBy reports whether r retired or revoked its old key by until.
func finishedBy(r *rotation.Rotation, until time.Time) bool {
	return !r.Running() && !r.Finished.After(until)
}

// lastStep is the furthest of retired and revoked that r reached by until.
func lastStep(r *rotation.Rotation, until time.Time) rotation.State {
	state := rotation.Retired
	for _, s := range r.Steps {
		if s.Kind == rotation.StepRevoked && !s.At.After(until) {
			state = rotation.Revoked
		}
	}
	return state
}

// stragglers returns the callers still on r's old key when it was retired: callers that used the
// old key after the rotation started and, at the retirement, either had not used the new key
// since their last old-key call or had used the old key within opts.QuietFor before it, applied
// at the retirement (a simpler rule than the readiness gate's: whole callers, one quiet period, the
// direct new key). A caller still calling the old key after the retirement (up to the end of the
// window) is one.
func stragglers(ctx context.Context, db Querier, r *rotation.Rotation, opts Options) ([]string, error) {
	started, finished, until := r.Started.UnixMilli(), r.Finished.UnixMilli(), opts.Until.UnixMilli()
	rows, err := db.Query(ctx, selectCallers, r.OldKeyID, r.NewKeyID, finished, r.OldKeyID, r.NewKeyID, started, until, started)
	if err != nil {
		return nil, fmt.Errorf("report: read the callers of %s (rotation %s) from key_caller_hours: %w", r.OldKeyID, r.ID, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var client, ip, ua string
		var oldLast, newLast time.Time
		if err := rows.Scan(&client, &ip, &ua, &oldLast, &newLast); err != nil {
			return nil, fmt.Errorf("report: read the callers of %s (rotation %s): %w", r.OldKeyID, r.ID, err)
		}
		moved := newLast.After(oldLast)
		if moved && r.Finished.Sub(oldLast) >= opts.QuietFor {
			continue
		}
		name := client
		if name == "" {
			name = ip + " (" + ua + ")"
		}
		out = append(out, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: read the callers of %s (rotation %s): %w", r.OldKeyID, r.ID, err)
	}
	return out, nil
}

// countActions counts k's emergency revokes and rollbacks within the window. An emergency revoke
// is a revoke webhook keywatch sent (automatic, approved or by hand), or the key's key.revoked
// lifecycle event when no keywatch revoke of the key was sent before it (a revoke made in the
// key-management system directly; the event that follows keywatch's own revoke is not counted
// twice: it may carry a time before keywatch recorded the receiver's answer, but not before the
// revoke was queued). A rollback is an extend_grace or reactivate webhook keywatch sent.
func countActions(k *rotation.Key, actions []action.Sent, opts Options) (revokes, rollbacks int) {
	in := func(t time.Time) bool { return !t.Before(opts.Since) && !t.After(opts.Until) }
	var revokedAt time.Time
	if k.State == rotation.Revoked {
		revokedAt = k.Updated
	}
	explained := false
	for _, a := range actions {
		if a.KeyID != k.ID {
			continue
		}
		switch a.Kind {
		case kindRevoke:
			if !revokedAt.IsZero() && !a.Queued.After(revokedAt) {
				explained = true
			}
			if in(a.At) {
				revokes++
			}
		case kindExtendGrace, kindReactivate:
			if in(a.At) {
				rollbacks++
			}
		}
	}
	if !revokedAt.IsZero() && !explained && in(revokedAt) {
		revokes++
	}
	return revokes, rollbacks
}

func compareTimes(a, b *time.Time) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return a.Compare(*b)
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

func ptr[T any](v T) *T { return &v }
