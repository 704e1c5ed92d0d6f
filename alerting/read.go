package alerting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
)

const (
	// selectOpenOfKey is the latest open (pending or firing) alert of a key by a detector whose
	// name starts with a prefix. Arguments: key, prefix.
	selectOpenOfKey = `SELECT fingerprint, detector, client_id, rotation_id, toString(severity), score, summary, toString(state), active_since, fired_at, last_seen
FROM alerts FINAL
WHERE key_id = ? AND startsWith(detector, ?) AND state IN ('pending', 'firing')
ORDER BY last_seen DESC LIMIT 1`

	// selectEpisodeState is the state of an alert episode. Arguments: fingerprint, fired_at (ms).
	selectEpisodeState = `SELECT toString(state) FROM alerts FINAL
WHERE fingerprint = ? AND fired_at = fromUnixTimestamp64Milli(toInt64(?), 'UTC')`

	// selectCurrent is every alert's current state, most severe first.
	selectCurrent = `SELECT fingerprint, detector, key_id, client_id, rotation_id, toString(state), toString(severity), score, summary, labels
FROM alerts FINAL
ORDER BY severity DESC, detector, key_id`
)

// Reader reads the stored alerts (the alerts table) for other packages: action asks whether a key
// has an open alert and whether an episode still fires; the demo shows every alert.
type Reader struct {
	conn driver.Conn
}

// NewReader returns a Reader over conn (a migrated database).
func NewReader(conn driver.Conn) *Reader { return &Reader{conn: conn} }

// OpenOfKey returns the latest open (pending or firing) alert of keyID by a detector whose name
// starts with prefix ("leak" for leak and leak_report); ok is false when there is none. Its
// evidence, labels, fields, muting and action are not read.
func (r *Reader) OpenOfKey(ctx context.Context, keyID, prefix string) (a Alert, ok bool, err error) {
	var sev, state string
	err = r.conn.QueryRow(ctx, selectOpenOfKey, keyID, prefix).Scan(&a.Fingerprint, &a.Detector, &a.ClientID, &a.RotationID,
		&sev, &a.Score, &a.Summary, &state, &a.ActiveSince, &a.FiredAt, &a.LastSeen)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Alert{}, false, nil
	case err != nil:
		return Alert{}, false, fmt.Errorf("read the open %s* alerts of key %s: %w", prefix, keyID, err)
	}
	a.KeyID, a.State = keyID, State(state)
	a.Severity, _ = finding.ParseSeverity(sev)
	a.ActiveSince, a.FiredAt, a.LastSeen = a.ActiveSince.UTC(), unsetZero(a.FiredAt), a.LastSeen.UTC()
	return a, true, nil
}

// Get returns the stored alert with fingerprint in full: its evidence, labels, fields, muting and
// action too. ok is false when there is none.
func (r *Reader) Get(ctx context.Context, fingerprint string) (a Alert, ok bool, err error) {
	rows, err := r.conn.Query(ctx, selectAlert, fingerprint)
	if err != nil {
		return Alert{}, false, fmt.Errorf("read alert %s: %w", fingerprint, err)
	}
	all, err := scanAlerts(rows)
	if err != nil {
		return Alert{}, false, fmt.Errorf("read alert %s: %w", fingerprint, err)
	}
	if len(all) == 0 {
		return Alert{}, false, nil
	}
	return all[0].Alert, true, nil
}

// ParseID splits an alert episode's id (Alert.ID) into its fingerprint and when it started firing.
func ParseID(id string) (fingerprint string, firedAt time.Time, ok bool) {
	i := strings.LastIndex(id, "-")
	if i < 0 {
		return "", time.Time{}, false
	}
	firedAt, err := time.Parse("20060102T150405.000Z", id[i+1:])
	if err != nil {
		return "", time.Time{}, false
	}
	return id[:i], firedAt, true
}

// EpisodeState returns the state of the alert episode id (Alert.ID); ok is false when no such
// episode is stored (or id is not an alert id).
func (r *Reader) EpisodeState(ctx context.Context, id string) (st State, ok bool, err error) {
	fp, firedAt, valid := ParseID(id)
	if !valid {
		return "", false, nil
	}
	var state string
	switch err := r.conn.QueryRow(ctx, selectEpisodeState, fp, firedAt.UnixMilli()).Scan(&state); {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("read the state of alert %s: %w", id, err)
	}
	return State(state), true, nil
}

// Current returns every stored alert's current identity, state, severity, score, summary and
// labels (what LabelSet needs), most severe first, then by detector and key.
func (r *Reader) Current(ctx context.Context) ([]Alert, error) {
	rows, err := r.conn.Query(ctx, selectCurrent)
	if err != nil {
		return nil, fmt.Errorf("read the current alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var a Alert
		var state, sev string
		if err := rows.Scan(&a.Fingerprint, &a.Detector, &a.KeyID, &a.ClientID, &a.RotationID, &state, &sev, &a.Score, &a.Summary, &a.Labels); err != nil {
			return nil, fmt.Errorf("read the current alerts: %w", err)
		}
		a.State = State(state)
		a.Severity, _ = finding.ParseSeverity(sev)
		if len(a.Labels) == 0 {
			a.Labels = nil
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// selectPage is a page of alerts by fingerprint, after a fingerprint, filtered. Arguments: after,
// states, detector (twice), key (twice), limit.
const selectPage = `SELECT fingerprint, detector, key_id, client_id, rotation_id, toString(severity), score, summary, toString(state),
    active_since, fired_at, resolved_at, last_seen, silenced, inhibited, labels
FROM alerts FINAL
WHERE fingerprint > ? AND toString(state) IN ? AND (? = '' OR detector = ?) AND (? = '' OR key_id = ?)
ORDER BY fingerprint
LIMIT ?`

// Query selects stored alerts for List: the alerts in one of States (every state when empty) of
// Detector and KeyID (any when empty) whose fingerprint sorts after After, at most Limit.
type Query struct {
	States          []State
	Detector, KeyID string
	After           string
	Limit           int
}

// List returns the stored alerts q selects in the order of their fingerprints, which does not
// change as alerts do: a caller pages through them by passing the last fingerprint as the next
// After. Their evidence, fields and action are not read.
func (r *Reader) List(ctx context.Context, q Query) ([]Alert, error) {
	states := make([]string, 0, 3)
	for _, s := range q.States {
		states = append(states, string(s))
	}
	if len(states) == 0 {
		states = []string{string(Pending), string(Firing), string(Resolved)}
	}
	rows, err := r.conn.Query(ctx, selectPage, q.After, states, q.Detector, q.Detector, q.KeyID, q.KeyID, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("read the alerts (states %v, detector %q, key %q) after %q: %w", states, q.Detector, q.KeyID, q.After, err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var a Alert
		var sev, state string
		if err := rows.Scan(&a.Fingerprint, &a.Detector, &a.KeyID, &a.ClientID, &a.RotationID, &sev, &a.Score, &a.Summary, &state,
			&a.ActiveSince, &a.FiredAt, &a.ResolvedAt, &a.LastSeen, &a.Silenced, &a.Inhibited, &a.Labels); err != nil {
			return nil, fmt.Errorf("read the alerts after %q: %w", q.After, err)
		}
		a.State = State(state)
		a.Severity, _ = finding.ParseSeverity(sev)
		a.ActiveSince, a.FiredAt, a.ResolvedAt, a.LastSeen = a.ActiveSince.UTC(), unsetZero(a.FiredAt), unsetZero(a.ResolvedAt), a.LastSeen.UTC()
		if len(a.Labels) == 0 {
			a.Labels = nil
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the alerts after %q: %w", q.After, err)
	}
	return out, nil
}
