package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/schema"
)

// Times are bound as Unix milliseconds (ms) and read with fromUnixTimestamp64Milli, as package schema
// says: DateTime64(3) columns compare exactly against them.
const (
	// selectAlerts reads the open alerts and those resolved since ?.
	selectAlerts = `SELECT fingerprint, detector, key_id, client_id, rotation_id, toString(severity), score, summary, evidence,
       toString(state), active_since, fired_at, resolved_at, last_seen, silenced, inhibited, action, version
FROM alerts FINAL
WHERE state != 'resolved' OR resolved_at > fromUnixTimestamp64Milli(toInt64(?), 'UTC')`

	// selectRuns reads each detector's latest ? runs started by ?, within the 30 days before: longer
	// than the findings lookback, so a daily detector is still known to be scheduled, without
	// reading the whole history (detector_runs keeps a row per run for the rollups' retention).
	selectRuns = `SELECT detector, run_id, started_at, error
FROM detector_runs
WHERE started_at <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
  AND started_at > fromUnixTimestamp64Milli(toInt64(?), 'UTC') - INTERVAL 30 DAY
ORDER BY detector, started_at DESC, run_id DESC
LIMIT ? BY detector`

	// selectFindings reads, per fingerprint found in its detector's window, its latest finding,
	// the run that found it and the first finding after the alert's previous episode (its
	// last_seen). Arguments: the earliest window start, the evaluation time, detector names, their
	// windows and the default window (ms).
	selectFindings = `SELECT f.fingerprint,
       argMax(f.detector, f.detected_at), argMax(f.key_id, f.detected_at), argMax(f.client_id, f.detected_at),
       argMax(f.rotation_id, f.detected_at), toString(argMax(f.severity, f.detected_at)), argMax(f.score, f.detected_at),
       argMax(f.summary, f.detected_at), argMax(f.evidence, f.detected_at), argMax(f.run_id, f.detected_at),
       max(f.detected_at), minIf(f.detected_at, f.detected_at > a.last_seen)
FROM findings AS f
LEFT JOIN (SELECT fingerprint, last_seen FROM alerts FINAL WHERE last_seen > fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AS a
    ON a.fingerprint = f.fingerprint
WHERE f.detected_at > fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND f.detected_at <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
  AND f.detected_at > fromUnixTimestamp64Milli(toInt64(?) - transform(toString(f.detector), CAST(? AS Array(String)), CAST(? AS Array(Int64)), toInt64(?)), 'UTC')
GROUP BY f.fingerprint`

	insertAlerts = `INSERT INTO alerts (fingerprint, detector, key_id, client_id, rotation_id, severity, score, summary, evidence,
	state, active_since, fired_at, resolved_at, last_seen, silenced, inhibited, action, updated_at, version)`

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

// found is what the findings of one fingerprint say as of an evaluation.
type found struct {
	Alert               // identity and latest fields; LastSeen is the latest finding
	firstNew  time.Time // first finding after the alert's last_seen (zero: none)
	lastRunID string
}

// run is one detector run.
type run struct {
	id      string
	started time.Time
	err     string
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func loadAlerts(ctx context.Context, conn driver.Conn, resolvedSince time.Time) (map[string]stored, error) {
	rows, err := conn.Query(ctx, selectAlerts, ms(resolvedSince))
	if err != nil {
		return nil, fmt.Errorf("alerting: read alerts: %w", err)
	}
	defer rows.Close()
	out := map[string]stored{}
	for rows.Next() {
		var s stored
		var sev, state, evidence, action string
		if err := rows.Scan(&s.Fingerprint, &s.Detector, &s.KeyID, &s.ClientID, &s.RotationID, &sev, &s.Score, &s.Summary, &evidence,
			&state, &s.ActiveSince, &s.FiredAt, &s.ResolvedAt, &s.LastSeen, &s.Silenced, &s.Inhibited, &action, &s.version); err != nil {
			return nil, fmt.Errorf("alerting: read alerts: %w", err)
		}
		s.Severity, _ = finding.ParseSeverity(sev)
		s.State = State(state)
		if evidence != "" {
			s.Evidence = json.RawMessage(evidence)
		}
		if action != "" {
			s.Action = new(ActionStatus)
			if err := json.Unmarshal([]byte(action), s.Action); err != nil {
				return nil, fmt.Errorf("alerting: action of alert %s: %w", s.Fingerprint, err)
			}
		}
		s.FiredAt, s.ResolvedAt = unsetZero(s.FiredAt), unsetZero(s.ResolvedAt)
		s.ActiveSince, s.LastSeen = s.ActiveSince.UTC(), s.LastSeen.UTC()
		out[s.Fingerprint] = s
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

func loadRuns(ctx context.Context, conn driver.Conn, to time.Time, perDetector int) (map[string][]run, error) {
	rows, err := conn.Query(ctx, selectRuns, ms(to), ms(to), perDetector)
	if err != nil {
		return nil, fmt.Errorf("alerting: read detector runs: %w", err)
	}
	defer rows.Close()
	out := map[string][]run{}
	for rows.Next() {
		var det string
		var r run
		if err := rows.Scan(&det, &r.id, &r.started, &r.err); err != nil {
			return nil, fmt.Errorf("alerting: read detector runs: %w", err)
		}
		r.started = r.started.UTC()
		out[det] = append(out[det], r) // newest first
	}
	return out, rows.Err()
}

// window is how far back findings are read: per detector, and for any other.
type window struct {
	detectors []string
	windows   []int64 // ms
	other     int64   // ms
}

func (w window) longest() time.Duration {
	return time.Duration(slices.Max(append([]int64{w.other}, w.windows...))) * time.Millisecond
}

func loadFindings(ctx context.Context, conn driver.Conn, w window, to time.Time) (map[string]found, error) {
	from := ms(to.Add(-w.longest()))
	detectors, windows := w.detectors, w.windows
	if detectors == nil {
		detectors, windows = []string{}, []int64{}
	}
	rows, err := conn.Query(ctx, selectFindings, from, from, ms(to), ms(to), detectors, windows, w.other)
	if err != nil {
		return nil, fmt.Errorf("alerting: read findings: %w", err)
	}
	defer rows.Close()
	out := map[string]found{}
	for rows.Next() {
		var f found
		var sev, evidence string
		if err := rows.Scan(&f.Fingerprint, &f.Detector, &f.KeyID, &f.ClientID, &f.RotationID, &sev, &f.Score, &f.Summary, &evidence,
			&f.lastRunID, &f.LastSeen, &f.firstNew); err != nil {
			return nil, fmt.Errorf("alerting: read findings: %w", err)
		}
		f.Severity, _ = finding.ParseSeverity(sev)
		if evidence != "" && evidence != "null" {
			f.Evidence = json.RawMessage(evidence)
		}
		f.LastSeen, f.firstNew = f.LastSeen.UTC(), unsetZero(f.firstNew)
		out[f.Fingerprint] = f
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
				a.Summary, string(a.Evidence), string(a.State), a.ActiveSince, orEpoch(a.FiredAt), orEpoch(a.ResolvedAt),
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
