package digest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/keywatch/keywatch/internal/schedule"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/notify"
)

// kindSafeToRetire is the rotation_nudges kind of the "safe to retire" message.
const kindSafeToRetire = "safe_to_retire"

const (
	// selectNudged reads which rotations were nudged in which channel.
	selectNudged = `SELECT rotation_id, channel FROM rotation_nudges FINAL WHERE kind = ?`
	insertNudge  = `INSERT INTO rotation_nudges (rotation_id, kind, channel, client_id, old_key_id, new_key_id, reason, message_key, sent_at)`
)

// Send builds the digest as of now and queues one message per channel (see channels) for the
// digest scheduled at scheduled. Channels without a rotation in flight get nothing. A digest is
// queued at most once per scheduled time and channel, so a repeated Send (a retry, a leader that
// catches up on a digest its predecessor already sent) changes nothing.
func (d *Digest) Send(ctx context.Context, scheduled time.Time) error {
	rep, err := d.Build(ctx, d.now())
	if err != nil {
		return err
	}
	per, order := d.byChannel(rep)
	key := "digest|" + scheduled.UTC().Format(time.RFC3339)
	for _, ch := range order {
		text, blocks := renderDigest(per[ch])
		queued, err := d.post.Post(ctx, notify.Post{Key: key, Channel: ch, Text: text, Blocks: blocks})
		if err != nil {
			return fmt.Errorf("digest: queue the digest of %s for %s: %w", scheduled.UTC().Format(time.RFC3339), ch, err)
		}
		if queued {
			d.log.Info("digest: queued", "channel", ch, "scheduled", scheduled.UTC(), "rotations", len(per[ch].Rotations))
		}
	}
	if len(rep.Rotations) > 0 {
		if err := d.publish(ctx, digestEvent(key, scheduled, rep)); err != nil {
			return fmt.Errorf("digest: publish the digest of %s: %w", scheduled.UTC().Format(time.RFC3339), err)
		}
	}
	return nil
}

// Nudge queues a "safe to retire OLD" message for every rotation in flight whose old key is safe
// to retire (detect.Lingering's Readiness) and was used since the rotation started (so its last
// straggler moved), in each of its channels, once: the message is recorded in rotation_nudges
// after it is queued, and queueing is itself once per rotation and channel, so neither repeated
// checks, restarts, nor a new leader send it again. It returns the rotations it nudged.
func (d *Digest) Nudge(ctx context.Context) ([]string, error) {
	now := d.now()
	rep, err := d.Build(ctx, now)
	if err != nil {
		return nil, err
	}
	done, err := d.nudged(ctx)
	if err != nil {
		return nil, err
	}
	var nudged []string
	for _, r := range rep.Rotations {
		if !r.Safe || !usedSinceStart(r) {
			continue
		}
		key := kindSafeToRetire + "|" + r.ID
		if err := d.publish(ctx, safeEvent(key, r, now)); err != nil {
			return nudged, fmt.Errorf("digest: publish \"safe to retire %s\": %w", r.OldKeyID, err)
		}
		for _, ch := range d.channels(r.ClientID) {
			if done[[2]string{r.ID, ch}] {
				continue
			}
			text := renderSafe(r)
			if _, err := d.post.Post(ctx, notify.Post{Key: key, Channel: ch, Text: text}); err != nil {
				return nudged, fmt.Errorf("digest: queue \"safe to retire %s\" for %s: %w", r.OldKeyID, ch, err)
			}
			if err := d.record(ctx, r, ch, key, now); err != nil {
				return nudged, err
			}
			d.log.Info("digest: safe to retire", "rotation_id", r.ID, "old_key_id", r.OldKeyID, "channel", ch)
			if !slices.Contains(nudged, r.ID) {
				nudged = append(nudged, r.ID)
			}
		}
	}
	return nudged, nil
}

func (d *Digest) nudged(ctx context.Context) (map[[2]string]bool, error) {
	rows, err := d.conn.Query(ctx, selectNudged, kindSafeToRetire)
	if err != nil {
		return nil, fmt.Errorf("digest: read rotation_nudges: %w", err)
	}
	defer rows.Close()
	out := map[[2]string]bool{}
	for rows.Next() {
		var id, ch string
		if err := rows.Scan(&id, &ch); err != nil {
			return nil, fmt.Errorf("digest: read rotation_nudges: %w", err)
		}
		out[[2]string{id, ch}] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("digest: read rotation_nudges: %w", err)
	}
	return out, nil
}

// record stores that r was nudged in channel ch, retrying while ClickHouse is unreachable; the
// deduplication token keeps a retried insert that did arrive from counting twice.
func (d *Digest) record(ctx context.Context, r Rotation, ch, key string, at time.Time) error {
	token := kindSafeToRetire + "|" + r.ID + "|" + ch
	err := schema.Retry(schema.WithInsertToken(ctx, token), time.Minute, func(ctx context.Context) error {
		b, err := d.conn.PrepareBatch(ctx, insertNudge)
		if err != nil {
			return err
		}
		defer b.Abort()
		if err := b.Append(r.ID, kindSafeToRetire, ch, r.ClientID, r.OldKeyID, r.NewKeyID, r.Reason, key, at.UTC()); err != nil {
			return err
		}
		return b.Send()
	})
	if err != nil {
		return fmt.Errorf("digest: record \"safe to retire\" of rotation %s in %s: %w", r.ID, ch, err)
	}
	return nil
}

// Run sends the digest on digest.schedule and checks for nudges on digest.nudge_schedule until
// ctx ends (run it on the leader only). A digest missed by at most digest.catch_up when Run starts
// is sent at once. Failures are logged and retried: a digest while ClickHouse is unreachable for
// up to 30 minutes, a nudge at the next check.
func (d *Digest) Run(ctx context.Context) error {
	if !d.anyChannel() && d.publisher == nil {
		d.log.Info("digest: no channel (digest.channel, slack.default_channel or a slack.routes entry with client globs) and no webhooks: no digests or nudges")
		<-ctx.Done()
		return nil
	}
	c := schedule.NewCron(d.log, "digest cron")
	var wg sync.WaitGroup
	job := func(fn func()) func() {
		return func() {
			wg.Add(1)
			defer wg.Done()
			if ctx.Err() == nil {
				fn()
			}
		}
	}
	if d.cfg.Schedule != "" {
		sched, err := schedule.Parse(d.cfg.Schedule)
		if err != nil {
			return fmt.Errorf("digest: digest.schedule %q: %w", d.cfg.Schedule, err)
		}
		c.Schedule(sched, cron.FuncJob(job(func() {
			// Keyed by the scheduled time, not the clock: a late run and a new leader's catch-up
			// make the same digest.
			now := d.now().UTC()
			d.sendLogged(ctx, cmp.Or(lastFire(sched, now, time.Minute), now.Truncate(time.Second)))
		})))
		if missed := lastFire(sched, d.now().UTC(), time.Duration(d.cfg.CatchUp)); !missed.IsZero() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.log.Info("digest: catching up on a scheduled digest", "scheduled", missed)
				d.sendLogged(ctx, missed)
			}()
		}
		d.log.Info("digest scheduled", "schedule", d.cfg.Schedule, "channel", d.defaultChannel())
	}
	if d.cfg.NudgeSchedule != "" {
		if _, err := c.AddFunc(d.cfg.NudgeSchedule, job(func() {
			if _, err := d.Nudge(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("digest: safe-to-retire check failed; retried at the next check", "err", err)
			}
		})); err != nil {
			return fmt.Errorf("digest: digest.nudge_schedule %q: %w", d.cfg.NudgeSchedule, err)
		}
	}
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done()
	wg.Wait()
	return nil
}

func (d *Digest) sendLogged(ctx context.Context, scheduled time.Time) {
	err := schema.Retry(ctx, d.retryOn, func(ctx context.Context) error { return d.Send(ctx, scheduled) })
	if err != nil && ctx.Err() == nil {
		d.log.Error("digest: sending the scheduled digest failed", "scheduled", scheduled, "err", err)
	}
}

// usedSinceStart says whether a client called the rotation's old key after the rotation started:
// a rotation whose old key saw no traffic since is not nudged.
func usedSinceStart(r Rotation) bool {
	for _, c := range r.Clients {
		if c.OldLastSeen != nil && !c.OldLastSeen.Before(r.Started) {
			return true
		}
	}
	return false
}

// lastFire returns the latest time sched fired within (now-within, now], or zero.
func lastFire(sched cron.Schedule, now time.Time, within time.Duration) time.Time {
	if within <= 0 {
		return time.Time{}
	}
	var last time.Time
	for t := sched.Next(now.Add(-within)); !t.After(now); t = sched.Next(t) {
		last = t
	}
	return last
}
