package detect

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestStoreRunKeepsMilliseconds: a run's start and end are stored to the millisecond (alerting tells
// the runs of one second apart by them), and one in 2200 as it is, not at 2106.
func TestStoreRunKeepsMilliseconds(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	for _, run := range []Run{
		{ID: "run-ms", Detector: "spike", Started: now.Add(123 * time.Millisecond), Finished: now.Add(987 * time.Millisecond)},
		{ID: "run-far", Detector: "leak", Started: time.Date(2200, 1, 2, 3, 4, 5, 6e6, time.UTC),
			Finished: time.Date(2200, 1, 2, 3, 4, 6, 7e6, time.UTC), Err: errors.New("boom")},
	} {
		if err := NewStore(s.conn).StoreRun(ctx, run); err != nil {
			t.Fatal(err)
		}
		var started, finished time.Time
		var errText string
		if err := s.conn.QueryRow(ctx, "SELECT started_at, finished_at, error FROM detector_runs WHERE run_id = ?", run.ID).
			Scan(&started, &finished, &errText); err != nil {
			t.Fatal(err)
		}
		if !started.Equal(run.Started) || !finished.Equal(run.Finished) {
			t.Errorf("%s stored as %s to %s, want %s to %s", run.ID, started.UTC(), finished.UTC(), run.Started, run.Finished)
		}
		want := ""
		if run.Err != nil {
			want = run.Err.Error()
		}
		if errText != want {
			t.Errorf("%s stored error %q, want %q", run.ID, errText, want)
		}
	}
}
