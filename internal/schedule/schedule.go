// Package schedule owns when keywatch's scheduled jobs run: the schedule syntax (cron with
// seconds, or descriptors like @every 5m) and the scheduler that runs the jobs. It does not own
// the jobs (detectors, digests) or their configuration (internal/config).
package schedule

import (
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"
)

// fields are the fields of a schedule: six with seconds first, or a descriptor.
const fields = cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor

// Parse reads a schedule: six cron fields with seconds ("0 */5 * * * *"), or a descriptor
// (@hourly, @every 5m).
func Parse(spec string) (cron.Schedule, error) {
	return cron.NewParser(fields).Parse(spec)
}

// NewCron returns a scheduler that reads schedules as Parse does, in UTC, runs a job a run at a
// time (a run still going when the next is due makes that one skip) and logs a job's panic
// instead of dying of it. Its own messages go to log prefixed with who ("cron", "digest cron"),
// the informational ones at debug level.
func NewCron(log *slog.Logger, who string) *cron.Cron {
	l := logger{log: log, prefix: who + ": "}
	return cron.New(cron.WithParser(cron.NewParser(fields)), cron.WithLocation(time.UTC),
		cron.WithChain(cron.Recover(l), cron.SkipIfStillRunning(l)))
}

// logger is cron.Logger on slog.
type logger struct {
	log    *slog.Logger
	prefix string
}

func (l logger) Info(msg string, kv ...any) { l.log.Debug(l.prefix+msg, kv...) }

func (l logger) Error(err error, msg string, kv ...any) {
	l.log.Error(l.prefix+msg, append(kv, "err", err)...)
}

// Serial is fn as a job that runs a run at a time and logs a panic instead of dying of it, like
// every job of NewCron: for a job that also runs outside its schedule (a first run at start), so
// that both kinds of run go through the one chain and never overlap.
func Serial(log *slog.Logger, who string, fn func()) cron.Job {
	l := logger{log: log, prefix: who + ": "}
	return cron.NewChain(cron.Recover(l), cron.SkipIfStillRunning(l)).Then(cron.FuncJob(fn))
}
