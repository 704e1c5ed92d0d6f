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

// FindingStore keeps findings and the record of every run.
type FindingStore interface {
	StoreRun(ctx context.Context, run finding.Run) error
}

// Engine runs detectors, once or on their schedules, and stores what they find, capped (see
// MaxFindingsPerKey and MaxFindingsPerRun).
type Engine struct {
	detectors []Scheduled
	store     FindingStore
	metrics   *Metrics
	log       *slog.Logger
	now       func() time.Time
}

// NewEngine returns an engine over detectors; store may be nil (findings are then only returned),
// metrics may be nil.
func NewEngine(detectors []Scheduled, store FindingStore, metrics *Metrics, log *slog.Logger) *Engine {
	return &Engine{detectors: detectors, store: store, metrics: metrics, log: log.With("component", "detect"), now: time.Now}
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
// each run, and returns the runs. An unknown name is an error before anything runs.
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

// Start runs every detector on its schedule until ctx ends, a run at a time per detector (a run
// that is still going when the next is due makes that one skip). It returns when ctx ends and
// the runs in flight have finished.
func (e *Engine) Start(ctx context.Context) error {
	c := schedule.NewCron(e.log, "cron")
	var wg sync.WaitGroup
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
