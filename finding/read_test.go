package finding

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestReads: what the consumers of findings and runs read through the Store.
func TestReads(t *testing.T) {
	conn := migrated(t)
	ctx := context.Background()
	s := NewStore(conn)
	t0 := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	spike := func(at time.Duration, step string) Finding {
		f := New("spike", t0.Add(at), "kid_old", "acme", "kid_old>kid_new")
		f.Severity, f.Summary, f.Evidence = Critical, "failures after "+step, map[string]string{"step": step}
		f.Labels = map[string]string{LabelStep: step}
		f.Fields.Add("Step", step)
		return f
	}
	leak := New("leak", t0.Add(30*time.Minute), "kid_live", "", "")
	leak.Severity, leak.Summary, leak.Score, leak.Evidence = Critical, "new networks", 120, nil
	for _, r := range []Run{
		{ID: "s1", Detector: "spike", Started: t0, Finished: t0, Findings: []Finding{spike(0, "retired")}},
		{ID: "s2", Detector: "spike", Started: t0.Add(10 * time.Minute), Finished: t0.Add(10 * time.Minute), Findings: []Finding{spike(10*time.Minute, "revoked")}},
		{ID: "s3", Detector: "spike", Started: t0.Add(20 * time.Minute), Finished: t0.Add(20 * time.Minute), Err: errors.New("boom")},
		{ID: "l1", Detector: "leak", Started: t0.Add(30 * time.Minute), Finished: t0.Add(30 * time.Minute), Findings: []Finding{leak}},
	} {
		if err := s.StoreRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	runs, err := s.Runs(ctx, t0.Add(time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	if sp := runs["spike"]; len(sp) != 2 || sp[0].ID != "s3" || sp[0].Err == nil || sp[0].Err.Error() != "boom" || sp[1].ID != "s2" || sp[1].Err != nil ||
		!sp[1].Started.Equal(t0.Add(10*time.Minute)) || len(runs["leak"]) != 1 {
		t.Fatalf("Runs: %+v", runs)
	}

	w := Window{Detectors: []string{"leak"}, Windows: []time.Duration{10 * time.Minute}, Other: time.Hour}
	fp := Fingerprint("spike", "kid_old", "acme", "kid_old>kid_new")
	got, err := s.Latest(ctx, w, t0.Add(45*time.Minute), map[string]time.Time{fp: t0.Add(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	l, ok := got[fp]
	if !ok || len(got) != 1 { // the leak finding is older than leak's window
		t.Fatalf("Latest: %+v, want only the spike", got)
	}
	want := spike(10*time.Minute, "revoked")
	if l.RunID != "s2" || !l.DetectedAt.Equal(want.DetectedAt) || !l.FirstAfter.Equal(t0.Add(10*time.Minute)) || l.Severity != Critical ||
		l.Summary != want.Summary || !reflect.DeepEqual(l.Labels, want.Labels) || !reflect.DeepEqual(l.Fields, want.Fields) ||
		string(l.Evidence.(json.RawMessage)) != `{"step":"revoked"}` {
		t.Fatalf("Latest: %+v", l)
	}
	got, err = s.Latest(ctx, w, t0.Add(45*time.Minute), nil)
	if err != nil || !got[fp].FirstAfter.Equal(t0) {
		t.Fatalf("Latest without an alert: first %s, %v; want the first finding", got[fp].FirstAfter, err)
	}
	got, err = s.Latest(ctx, w, t0.Add(45*time.Minute), map[string]time.Time{fp: t0.Add(10 * time.Minute)})
	if err != nil || !got[fp].FirstAfter.IsZero() {
		t.Fatalf("Latest with nothing new: first %s, %v; want none", got[fp].FirstAfter, err)
	}

	f, ok, err := s.LatestOfKey(ctx, "kid_live", "leak", t0)
	if err != nil || !ok || f.Detector != "leak" || f.Summary != "new networks" || !f.DetectedAt.Equal(leak.DetectedAt) || f.Fingerprint != leak.Fingerprint {
		t.Fatalf("LatestOfKey: %+v %v %v", f, ok, err)
	}
	if _, ok, err := s.LatestOfKey(ctx, "kid_live", "leak", t0.Add(time.Hour)); ok || err != nil {
		t.Fatalf("LatestOfKey since after it: %v %v", ok, err)
	}
	if _, ok, err := s.LatestOfKey(ctx, "kid_old", "leak", t0); ok || err != nil {
		t.Fatalf("LatestOfKey of another detector's key: %v %v", ok, err)
	}

	for _, c := range []struct {
		detector, run string
		want          uint64
	}{{"spike", "s2", 1}, {"spike", "s3", 0}, {"leak", "s2", 0}} {
		if n, err := s.RunFindings(ctx, c.detector, c.run); err != nil || n != c.want {
			t.Errorf("RunFindings(%s, %s) = %d %v, want %d", c.detector, c.run, n, err, c.want)
		}
	}
}
