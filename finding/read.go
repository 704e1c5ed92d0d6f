package finding

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Times are bound as Unix milliseconds and read with fromUnixTimestamp64Milli (package schema):
// DateTime64(3) columns compare exactly against them.
const (
	// selectRuns reads each detector's latest ? runs started by ?, within the 30 days before: longer
	// than any findings lookback, so a daily detector is still known to be scheduled, without
	// reading the whole history (detector_runs keeps a row per run for the rollups' retention).
	selectRuns = `SELECT detector, run_id, started_at, finished_at, error
FROM detector_runs
WHERE started_at <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
  AND started_at > fromUnixTimestamp64Milli(toInt64(?), 'UTC') - INTERVAL 30 DAY
ORDER BY detector, started_at DESC, run_id DESC
LIMIT ? BY detector`

	// selectLatest reads, per fingerprint found in its detector's window, its latest finding, the
	// run that found it and its first finding after a given time (per fingerprint, else the epoch).
	// Arguments: the earliest window start, the evaluation time, fingerprints and their times (ms),
	// detector names, their windows and the default window (ms).
	selectLatest = `SELECT f.fingerprint,
       argMax(f.detector, f.detected_at), argMax(f.key_id, f.detected_at), argMax(f.client_id, f.detected_at),
       argMax(f.rotation_id, f.detected_at), toString(argMax(f.severity, f.detected_at)), argMax(f.score, f.detected_at),
       argMax(f.summary, f.detected_at), argMax(f.evidence, f.detected_at), argMax(f.labels, f.detected_at),
       argMax(f.fields, f.detected_at), argMax(f.run_id, f.detected_at),
       max(f.detected_at),
       minIf(f.detected_at, f.detected_at > fromUnixTimestamp64Milli(transform(f.fingerprint, CAST(? AS Array(String)), CAST(? AS Array(Int64)), toInt64(0)), 'UTC'))
FROM findings AS f
WHERE f.detected_at > fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND f.detected_at <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
  AND f.detected_at > fromUnixTimestamp64Milli(toInt64(?) - transform(toString(f.detector), CAST(? AS Array(String)), CAST(? AS Array(Int64)), toInt64(?)), 'UTC')
GROUP BY f.fingerprint`

	// selectLatestOfKey is the latest finding of a key by a detector whose name starts with a
	// prefix, since a time. Arguments: key, prefix, since (ms).
	selectLatestOfKey = `SELECT detector, fingerprint, toString(severity), score, client_id, rotation_id, summary, detected_at
FROM findings
WHERE key_id = ? AND startsWith(detector, ?) AND detected_at >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
ORDER BY detected_at DESC LIMIT 1`

	// countRunFindings counts the findings stored by one run of a detector.
	countRunFindings = `SELECT count() FROM findings WHERE detector = ? AND run_id = ?`
)

// Runs reads each detector's latest n runs started by to (and within the 30 days before), newest
// first, by detector. A run's Err holds the error text it was stored with; its Findings are not read.
func (s *Store) Runs(ctx context.Context, to time.Time, n int) (map[string][]Run, error) {
	rows, err := s.conn.Query(ctx, selectRuns, to.UnixMilli(), to.UnixMilli(), n)
	if err != nil {
		return nil, fmt.Errorf("read the latest %d runs of each detector up to %s: %w", n, to.Format(time.RFC3339), err)
	}
	defer rows.Close()
	out := map[string][]Run{}
	for rows.Next() {
		var r Run
		var errText string
		if err := rows.Scan(&r.Detector, &r.ID, &r.Started, &r.Finished, &errText); err != nil {
			return nil, fmt.Errorf("read the latest %d runs of each detector up to %s: %w", n, to.Format(time.RFC3339), err)
		}
		r.Started, r.Finished = r.Started.UTC(), r.Finished.UTC()
		if errText != "" {
			r.Err = errors.New(errText)
		}
		out[r.Detector] = append(out[r.Detector], r)
	}
	return out, rows.Err()
}

// Window bounds which findings Latest reads: those of the Detectors within their Windows before
// the evaluation time, and those of any other detector within Other.
type Window struct {
	Detectors []string
	Windows   []time.Duration
	Other     time.Duration
}

// Longest is the longest of the windows.
func (w Window) Longest() time.Duration {
	return slices.Max(append([]time.Duration{w.Other}, w.Windows...))
}

// Latest is what the findings of one fingerprint say as of a time: its latest finding (whose
// DetectedAt is the latest detection), the run that stored it, and the first detection after the
// time it was asked about (zero when none).
type Latest struct {
	Finding
	RunID      string
	FirstAfter time.Time
}

// Latest reads, for every fingerprint found within its detector's window before to, its latest
// finding and its first detection after after[fingerprint] (the epoch for a fingerprint not in
// after). Evidence is the stored JSON (a json.RawMessage), nil when none was stored.
func (s *Store) Latest(ctx context.Context, w Window, to time.Time, after map[string]time.Time) (map[string]Latest, error) {
	from := to.Add(-w.Longest()).UnixMilli()
	detectors, windows := []string{}, []int64{}
	for i, d := range w.Detectors {
		detectors, windows = append(detectors, d), append(windows, w.Windows[i].Milliseconds())
	}
	fps, times := []string{}, []int64{}
	for fp, t := range after {
		fps, times = append(fps, fp), append(times, t.UnixMilli())
	}
	rows, err := s.conn.Query(ctx, selectLatest, fps, times, from, to.UnixMilli(), to.UnixMilli(), detectors, windows, w.Other.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("read the latest findings up to %s: %w", to.Format(time.RFC3339), err)
	}
	defer rows.Close()
	out := map[string]Latest{}
	for rows.Next() {
		var l Latest
		var sev, evidence, fields string
		if err := rows.Scan(&l.Fingerprint, &l.Detector, &l.KeyID, &l.ClientID, &l.RotationID, &sev, &l.Score, &l.Summary, &evidence,
			&l.Labels, &fields, &l.RunID, &l.DetectedAt, &l.FirstAfter); err != nil {
			return nil, fmt.Errorf("read the latest findings up to %s: %w", to.Format(time.RFC3339), err)
		}
		l.Severity, _ = ParseSeverity(sev)
		if evidence != "" && evidence != "null" {
			l.Evidence = json.RawMessage(evidence)
		}
		if len(l.Labels) == 0 {
			l.Labels = nil
		}
		if l.Fields, err = ParseFields(fields); err != nil {
			return nil, fmt.Errorf("read the latest finding of %s: %w", l.Fingerprint, err)
		}
		l.DetectedAt, l.FirstAfter = l.DetectedAt.UTC(), unsetZero(l.FirstAfter)
		out[l.Fingerprint] = l
	}
	return out, rows.Err()
}

// LatestOfKey reads the latest finding about keyID since a time by a detector whose name starts
// with prefix ("leak" for leak and leak_report); ok is false when there is none. Its evidence,
// labels and fields are not read.
func (s *Store) LatestOfKey(ctx context.Context, keyID, prefix string, since time.Time) (f Finding, ok bool, err error) {
	var sev string
	err = s.conn.QueryRow(ctx, selectLatestOfKey, keyID, prefix, since.UnixMilli()).
		Scan(&f.Detector, &f.Fingerprint, &sev, &f.Score, &f.ClientID, &f.RotationID, &f.Summary, &f.DetectedAt)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Finding{}, false, nil
	case err != nil:
		return Finding{}, false, fmt.Errorf("read the latest %s* finding of key %s since %s: %w", prefix, keyID, since.Format(time.RFC3339), err)
	}
	f.KeyID, f.DetectedAt = keyID, f.DetectedAt.UTC()
	f.Severity, _ = ParseSeverity(sev)
	return f, true, nil
}

// RunFindings counts the findings stored by run runID of detector.
func (s *Store) RunFindings(ctx context.Context, detector, runID string) (uint64, error) {
	var n uint64
	if err := s.conn.QueryRow(ctx, countRunFindings, detector, runID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the findings of %s run %s: %w", detector, runID, err)
	}
	return n, nil
}

// unsetZero turns the epoch (what minIf gives when nothing matched) into the zero time.
func unsetZero(t time.Time) time.Time {
	if t.UnixMilli() == 0 {
		return time.Time{}
	}
	return t.UTC()
}
