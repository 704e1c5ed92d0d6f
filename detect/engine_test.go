package detect

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// countingJob counts its runs.
type countingJob struct{ runs chan time.Time }

func (j countingJob) Name() string { return "counting" }
func (j countingJob) Run(_ context.Context, now time.Time) error {
	j.runs <- now
	return nil
}

// RunOnce runs the detectors only; the jobs run through RunJobs, and on Start once at once, then on
// their schedule.
func TestEngineRunsJobsBesideDetectors(t *testing.T) {
	job := countingJob{runs: make(chan time.Time, 10)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := NewEngine([]Scheduled{{Detector: fixed{"probe", nil}}}, nil, nil, log, ScheduledJob{Job: job, Schedule: "@every 1h"})
	if _, err := e.RunOnce(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if len(job.runs) != 0 {
		t.Fatalf("RunOnce ran the job %d times, want none", len(job.runs))
	}
	if err := e.RunJobs(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if got := <-job.runs; !got.Equal(now) {
		t.Fatalf("RunJobs ran the job as of %s, want %s", got, now)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()
	select {
	case <-job.runs:
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not run the job at once")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	bad := NewEngine(nil, nil, nil, log, ScheduledJob{Job: job, Schedule: "not a schedule"})
	if err := bad.Start(context.Background()); err == nil {
		t.Fatal("Start with a bad job schedule: no error")
	}
}
