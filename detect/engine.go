package detect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/schedule"
	"github.com/robfig/cron/v3"
)

// Detector is one scheduled check: it reads ClickHouse as of now and returns its findings.
type Detector interface {
	Name() string
	Detect(ctx context.Context, now time.Time) ([]finding.Finding, error)
}

// Scheduled is a detector with its cron schedule (schedule.Parse syntax).
type Scheduled struct {
	Detector Detector
	Schedule string
}

// Job is scheduled work that writes what detectors read (a rollup's finalization), so that the
// detectors themselves only read. A detector never depends on a job having run: it reads what the
// job has not written yet from the data the job reads.
type Job interface {
	Name() string
	Run(ctx context.Context, now time.Time) error
}

// ScheduledJob is a job with its cron schedule (schedule.Parse syntax).
type ScheduledJob struct {
	Job      Job
	Schedule string
}

// FindingStore keeps findings and the record of every run.
type FindingStore interface {
	StoreRun(ctx context.Context, run finding.Run) error
}

// Engine runs detectors, once or on their schedules, and stores what they find, capped (see
// MaxFindingsPerKey and MaxFindingsPerRun). On their schedules, it also runs the jobs beside them.
type Engine struct {
	detectors []Scheduled
	jobs      []ScheduledJob
	store     FindingStore
	metrics   *Metrics
	log       *slog.Logger
	now       func() time.Time
}

// NewEngine returns an engine over detectors and jobs (see Jobs); store may be nil (findings are
// then only returned), metrics may be nil.
func NewEngine(detectors []Scheduled, store FindingStore, metrics *Metrics, log *slog.Logger, jobs ...ScheduledJob) *Engine {
	return &Engine{detectors: detectors, jobs: jobs, store: store, metrics: metrics, log: log.With("component", "detect"), now: time.Now}
}

// Names returns the detectors' names in the engine's order.
func (e *Engine) Names() []string {
	out := make([]string, len(e.detectors))
	for i, d := range e.detectors {
		out[i] = d.Detector.Name()
	}
	return out
}

// RunOnce runs the named detectors (all when names is empty) one after another as of now, stores
// each run, and returns the runs. It runs no job: with no store, it only reads. An unknown name is
// an error before anything runs.
func (e *Engine) RunOnce(ctx context.Context, now time.Time, names ...string) ([]finding.Run, error) {
	for _, n := range names {
		if !slices.Contains(e.Names(), n) {
			return nil, fmt.Errorf("detect: no detector %q (have %v)", n, e.Names())
		}
	}
	var runs []finding.Run
	var errs []error
	for _, d := range e.detectors {
		if len(names) > 0 && !slices.Contains(names, d.Detector.Name()) {
			continue
		}
		run := e.run(ctx, d.Detector, now)
		runs = append(runs, run)
		if run.Err != nil {
			errs = append(errs, run.Err)
		}
	}
	return runs, errors.Join(errs...)
}

func (e *Engine) run(ctx context.Context, d Detector, now time.Time) finding.Run {
	run := finding.Run{ID: newRunID(), Detector: d.Name(), Started: e.now()}
	findings, err := d.Detect(ctx, now)
	run.Finished = e.now()
	if err != nil {
		run.Err = fmt.Errorf("detect: %s: %w", d.Name(), err)
	}
	// Most urgent first, at most MaxFindingsPerKey about a key and MaxFindingsPerRun in all.
	run.Findings = capFindings(findings, MaxFindingsPerKey, MaxFindingsPerRun)
	if e.store != nil {
		if serr := e.store.StoreRun(ctx, run); serr != nil {
			run.Err = errors.Join(run.Err, serr)
		}
	}
	e.metrics.observe(run)
	level := slog.LevelInfo
	if run.Err != nil {
		level = slog.LevelError
	}
	e.log.Log(ctx, level, "detector ran", "detector", run.Detector, "run_id", run.ID,
		"duration", run.Finished.Sub(run.Started), "findings", len(run.Findings), "err", run.Err)
	return run
}

// RunJobs runs every job once, one after another, as of now.
func (e *Engine) RunJobs(ctx context.Context, now time.Time) error {
	var errs []error
	for _, j := range e.jobs {
		errs = append(errs, e.runJob(ctx, j.Job, now))
	}
	return errors.Join(errs...)
}

func (e *Engine) runJob(ctx context.Context, j Job, now time.Time) error {
	started := e.now()
	err := j.Run(ctx, now)
	if err != nil {
		err = fmt.Errorf("run job %s as of %s: %w", j.Name(), now.UTC().Format(time.RFC3339), err)
		e.log.Error("job ran", "job", j.Name(), "duration", e.now().Sub(started), "err", err)
		return err
	}
	e.log.Debug("job ran", "job", j.Name(), "duration", e.now().Sub(started))
	return nil
}

// Start runs every detector and every job on its schedule until ctx ends, a run at a time per
// detector or job (a run that is still going when the next is due makes that one skip); each job
// also runs once at the start. It returns when ctx ends and the runs in flight have finished.
func (e *Engine) Start(ctx context.Context) error {
	c := schedule.NewCron(e.log, "cron")
	var wg sync.WaitGroup
	// A job's first run goes through the same chain as its scheduled ones, so they never overlap.
	var first []cron.Job
	for _, j := range e.jobs {
		job := j.Job
		sched, err := schedule.Parse(j.Schedule)
		if err != nil {
			return fmt.Errorf("schedule job %s %q: %w", job.Name(), j.Schedule, err)
		}
		run := schedule.Serial(e.log, "cron", func() {
			wg.Add(1)
			defer wg.Done()
			if ctx.Err() == nil {
				_ = e.runJob(ctx, job, e.now())
			}
		})
		c.Schedule(sched, run)
		first = append(first, run)
		e.log.Info("job scheduled", "job", job.Name(), "schedule", j.Schedule)
	}
	for _, d := range e.detectors {
		if d.Schedule == "" {
			continue
		}
		det := d.Detector
		if _, err := c.AddFunc(d.Schedule, func() {
			wg.Add(1)
			defer wg.Done()
			if ctx.Err() == nil {
				e.run(ctx, det, e.now())
			}
		}); err != nil {
			return fmt.Errorf("detect: schedule of %s %q: %w", det.Name(), d.Schedule, err)
		}
		e.log.Info("detector scheduled", "detector", det.Name(), "schedule", d.Schedule)
	}
	c.Start()
	for _, run := range first {
		go run.Run()
	}
	<-ctx.Done()
	<-c.Stop().Done()
	wg.Wait()
	return nil
}

func newRunID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
