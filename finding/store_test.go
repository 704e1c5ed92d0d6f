package finding

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
)

// TestStoreRunKeepsMilliseconds: a run's start and end are stored to the millisecond (alerting tells
// the runs of one second apart by them), and one in 2200 as it is, not at 2106.
func TestStoreRunKeepsMilliseconds(t *testing.T) {
	conn := migrated(t)
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for _, run := range []Run{
		{ID: "run-ms", Detector: "spike", Started: now.Add(123 * time.Millisecond), Finished: now.Add(987 * time.Millisecond)},
		{ID: "run-far", Detector: "leak", Started: time.Date(2200, 1, 2, 3, 4, 5, 6e6, time.UTC),
			Finished: time.Date(2200, 1, 2, 3, 4, 6, 7e6, time.UTC), Err: errors.New("boom")},
	} {
		if err := NewStore(conn).StoreRun(ctx, run); err != nil {
			t.Fatal(err)
		}
		var started, finished time.Time
		var errText string
		if err := conn.QueryRow(ctx, "SELECT started_at, finished_at, error FROM detector_runs WHERE run_id = ?", run.ID).
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

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

func migrated(t *testing.T) driver.Conn {
	t.Helper()
	_, conn := schematest.NewDatabase(t, ch)
	return conn
}

// TestStoreRunKeepsLabelsAndFields: a finding's labels and display fields are stored beside its
// evidence and read back as they were written.
func TestStoreRunKeepsLabelsAndFields(t *testing.T) {
	conn := migrated(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	f := New("spike", now, "kid_old", "acme-billing", "kid_old>kid_new")
	f.Severity, f.Summary, f.Evidence = Critical, "failures jumped", map[string]int{"failures": 40}
	f.Labels = map[string]string{LabelStep: "retired"}
	f.Fields.Add("Failures", "40 in 5m (baseline 1)")
	f.Fields.Add("Empty", "")
	if err := NewStore(conn).StoreRun(ctx, Run{ID: "run-labels", Detector: "spike", Started: now, Finished: now, Findings: []Finding{f}}); err != nil {
		t.Fatal(err)
	}
	var labels map[string]string
	var fields string
	if err := conn.QueryRow(ctx, "SELECT labels, fields FROM findings WHERE run_id = 'run-labels'").Scan(&labels, &fields); err != nil {
		t.Fatal(err)
	}
	got, err := ParseFields(fields)
	if err != nil {
		t.Fatal(err)
	}
	if labels[LabelStep] != "retired" || len(got) != 1 || got[0] != (Field{"Failures", "40 in 5m (baseline 1)"}) {
		t.Errorf("stored labels %v fields %v", labels, got)
	}
	if s := f.Set(); s[LabelDetector] != "spike" || s[LabelSeverity] != "critical" || s[LabelStep] != "retired" || s[LabelRotationID] != "kid_old>kid_new" {
		t.Errorf("Set() = %v", s)
	}
}
