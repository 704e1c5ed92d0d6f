package finding

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/schema"
)

const (
	insertFindings = `INSERT INTO findings (detected_at, run_id, detector, fingerprint, severity, score, key_id, client_id, rotation_id, summary, evidence, labels, fields)`
	insertRun      = `INSERT INTO detector_runs (run_id, detector, started_at, finished_at, findings, error)`
)

// Store writes findings and runs to ClickHouse.
type Store struct {
	conn driver.Conn
}

// NewStore returns a store over conn.
func NewStore(conn driver.Conn) *Store { return &Store{conn: conn} }

// StoreRun stores a run's findings, then the run itself, retrying while ClickHouse is unreachable
// (up to a minute) so that no finding is lost to a blip. Each insert carries a deduplication token
// of the run id, so a retried insert that had in fact arrived is not stored twice.
func (s *Store) StoreRun(ctx context.Context, run Run) error {
	if len(run.Findings) > 0 {
		if err := schema.Retry(schema.WithInsertToken(ctx, run.ID+":findings"), time.Minute, func(ctx context.Context) error {
			b, err := s.conn.PrepareBatch(ctx, insertFindings)
			if err != nil {
				return err
			}
			defer b.Abort()
			for _, f := range run.Findings {
				ev, err := f.EvidenceJSON()
				if err != nil {
					return err
				}
				if err := b.Append(f.DetectedAt, run.ID, f.Detector, f.Fingerprint, f.Severity.String(), f.Score,
					f.KeyID, f.ClientID, f.RotationID, f.Summary, ev, labelsOrEmpty(f.Labels), f.Fields.JSON()); err != nil {
					return err
				}
			}
			return b.Send()
		}); err != nil {
			return fmt.Errorf("store %d findings of %s run %s: %w", len(run.Findings), run.Detector, run.ID, err)
		}
	}
	errText := ""
	if run.Err != nil {
		errText = run.Err.Error()
	}
	if err := schema.Retry(schema.WithInsertToken(ctx, run.ID+":run"), time.Minute, func(ctx context.Context) error {
		return s.conn.Exec(ctx, insertRun+" VALUES (?, ?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, ?)",
			run.ID, run.Detector, run.Started.UnixMilli(), run.Finished.UnixMilli(), uint32(len(run.Findings)), errText)
	}); err != nil {
		return fmt.Errorf("store %s run %s: %w", run.Detector, run.ID, err)
	}
	return nil
}

func labelsOrEmpty(l map[string]string) map[string]string {
	if l == nil {
		return map[string]string{}
	}
	return l
}
