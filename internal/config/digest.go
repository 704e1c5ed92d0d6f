package config

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/keywatch/keywatch/internal/schedule"
)

// Digest posts a scheduled Slack digest of every rotation in flight (per client: share of traffic
// on the new key, stragglers, time left, safe to retire) and a one-off "safe to retire" message
// when a rotation's last straggler moved.
type Digest struct {
	Schedule      string   `yaml:"schedule" help:"cron schedule with seconds of the rotation digest (UTC); empty disables the digest"`
	Channel       string   `yaml:"channel" help:"channel that gets the digest of every rotation in flight; empty: slack.default_channel"`
	ClientRoutes  bool     `yaml:"client_routes" help:"slack.routes entries with client globs also get a digest of only their clients' rotations"`
	NudgeSchedule string   `yaml:"nudge_schedule" help:"cron schedule with seconds of the check for rotations whose last straggler moved (one \"safe to retire\" message each); empty disables it"`
	CatchUp       Duration `yaml:"catch_up" help:"a scheduled digest missed by at most this long (restart, leader change) is sent when the leader starts; 0s: never"`
}

func defaultDigest() Digest {
	return Digest{
		Schedule: "0 0 9 * * 1-5", ClientRoutes: true,
		NudgeSchedule: "0 */5 * * * *", CatchUp: Duration(time.Hour),
	}
}

func (d Digest) validate() []error {
	var errs []error
	for path, s := range map[string]string{"digest.schedule": d.Schedule, "digest.nudge_schedule": d.NudgeSchedule} {
		if s == "" {
			continue
		}
		sched, err := schedule.Parse(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %v (six fields with seconds, e.g. \"0 0 9 * * 1-5\", or @every 5m)", path, s, err))
			continue
		}
		// A digest is keyed by its scheduled time, so that a late run, a restart or a new leader
		// sends it once: @every has no fixed times.
		if _, every := sched.(cron.ConstantDelaySchedule); every && path == "digest.schedule" {
			errs = append(errs, fmt.Errorf("%s: %q: @every has no fixed times to send a digest once at; use six fields with seconds, e.g. \"0 0 9 * * 1-5\"", path, s))
		}
	}
	if d.CatchUp < 0 {
		errs = append(errs, fmt.Errorf("digest.catch_up: %s: must not be negative", d.CatchUp))
	}
	return errs
}
