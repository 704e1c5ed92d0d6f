package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/schema"
)

// Times are bound as Unix milliseconds (ms) and read with fromUnixTimestamp64Milli, as package schema
// says: DateTime64(3) columns compare exactly against them.
const (
	// alertColumns are what scanAlerts reads: an alert in full, with its version.
	alertColumns = `fingerprint, detector, key_id, client_id, rotation_id, toString(severity), score, summary, evidence,
       labels, fields, toString(state), active_since, fired_at, resolved_at, last_seen, silenced, inhibited, action, version`

	// selectAlerts reads the open alerts and those resolved since ?.
	selectAlerts = `SELECT ` + alertColumns + `
FROM alerts FINAL
WHERE state != 'resolved' OR resolved_at > fromUnixTimestamp64Milli(toInt64(?), 'UTC')`

	// selectAlert reads the alert of fingerprint ?.
	selectAlert = `SELECT ` + alertColumns + `
FROM alerts FINAL
WHERE fingerprint = ?`

	// selectLastSeen reads the last finding of every alert seen since ?: what the findings read
	// after it count as a new episode from.
	selectLastSeen = `SELECT fingerprint, last_seen FROM alerts FINAL WHERE last_seen > fromUnixTimestamp64Milli(toInt64(?), 'UTC')`

	insertAlerts = `INSERT INTO alerts (fingerprint, detector, key_id, client_id, rotation_id, severity, score, summary, evidence,
	labels, fields, state, active_since, fired_at, resolved_at, last_seen, silenced, inhibited, action, updated_at, version)`

	selectNotificationState = `SELECT group_key, channel, content_hash, resolved, notified_at, version
FROM alert_notifications_state FINAL
WHERE NOT resolved OR notified_at > fromUnixTimestamp64Milli(toInt64(?), 'UTC')`
	insertNotificationState = `INSERT INTO alert_notifications_state (group_key, channel, content_hash, resolved, notified_at, version)`
)

// stored is an alert as read back, with its row version.
type stored struct {
	Alert
	version uint64
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func loadAlerts(ctx context.Context, conn driver.Conn, resolvedSince time.Time) (map[string]stored, error) {
	rows, err := conn.Query(ctx, selectAlerts, ms(resolvedSince))
	if err != nil {
		return nil, fmt.Errorf("alerting: read alerts: %w", err)
	}
	all, err := scanAlerts(rows)
	if err != nil {
		return nil, fmt.Errorf("alerting: read alerts: %w", err)
	}
	out := make(map[string]stored, len(all))
	for _, s := range all {
		out[s.Fingerprint] = s
	}
	return out, nil
}

// scanAlerts reads rows of alertColumns and closes them.
func scanAlerts(rows driver.Rows) ([]stored, error) {
	defer rows.Close()
	var out []stored
	for rows.Next() {
		var s stored
		var sev, state, evidence, fields, action string
		if err := rows.Scan(&s.Fingerprint, &s.Detector, &s.KeyID, &s.ClientID, &s.RotationID, &sev, &s.Score, &s.Summary, &evidence,
			&s.Labels, &fields, &state, &s.ActiveSince, &s.FiredAt, &s.ResolvedAt, &s.LastSeen, &s.Silenced, &s.Inhibited, &action, &s.version); err != nil {
			return nil, err
		}
		s.Severity, _ = finding.ParseSeverity(sev)
		s.State = State(state)
		if evidence != "" {
			s.Evidence = json.RawMessage(evidence)
		}
		if len(s.Labels) == 0 {
			s.Labels = nil
		}
		var err error
		if s.Fields, err = finding.ParseFields(fields); err != nil {
			return nil, fmt.Errorf("fields of alert %s: %w", s.Fingerprint, err)
		}
		if action != "" {
			s.Action = new(ActionStatus)
			if err := json.Unmarshal([]byte(action), s.Action); err != nil {
				return nil, fmt.Errorf("action of alert %s: %w", s.Fingerprint, err)
			}
		}
		s.FiredAt, s.ResolvedAt = unsetZero(s.FiredAt), unsetZero(s.ResolvedAt)
		s.ActiveSince, s.LastSeen = s.ActiveSince.UTC(), s.LastSeen.UTC()
		out = append(out, s)
	}
	return out, rows.Err()
}

// unsetZero turns the stored 1970-01-01 back into the zero time.
func unsetZero(t time.Time) time.Time {
	if t.UnixMilli() == 0 {
		return time.Time{}
	}
	return t.UTC()
}

// lastSeen reads when each alert seen since was last found.
func lastSeen(ctx context.Context, conn driver.Conn, since time.Time) (map[string]time.Time, error) {
	rows, err := conn.Query(ctx, selectLastSeen, ms(since))
	if err != nil {
		return nil, fmt.Errorf("alerting: read the alerts seen since %s: %w", since.Format(time.RFC3339), err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var fp string
		var t time.Time
		if err := rows.Scan(&fp, &t); err != nil {
			return nil, fmt.Errorf("alerting: read the alerts seen since %s: %w", since.Format(time.RFC3339), err)
		}
		out[fp] = t.UTC()
	}
	return out, rows.Err()
}

func writeAlerts(ctx context.Context, conn driver.Conn, alerts []stored, now time.Time) error {
	if len(alerts) == 0 {
		return nil
	}
	return schema.Retry(ctx, time.Minute, func(ctx context.Context) error {
		b, err := conn.PrepareBatch(ctx, insertAlerts)
		if err != nil {
			return err
		}
		defer b.Abort()
		for _, a := range alerts {
			action := ""
			if a.Action != nil {
				raw, _ := json.Marshal(a.Action)
				action = string(raw)
			}
			if err := b.Append(a.Fingerprint, a.Detector, a.KeyID, a.ClientID, a.RotationID, a.Severity.String(), a.Score,
				a.Summary, string(a.Evidence), labelsOrEmpty(a.Labels), a.Fields.JSON(), string(a.State), a.ActiveSince, orEpoch(a.FiredAt), orEpoch(a.ResolvedAt),
				a.LastSeen, a.Silenced, a.Inhibited, action, now, a.version); err != nil {
				return err
			}
		}
		return b.Send()
	})
}

func orEpoch(t time.Time) time.Time {
	if t.IsZero() {
		return time.UnixMilli(0).UTC()
	}
	return t
}

func labelsOrEmpty(l map[string]string) map[string]string {
	if l == nil {
		return map[string]string{}
	}
	return l
}
