package digest

import (
	"context"
	"time"

	"github.com/keywatch/keywatch/webhook"
)

// Publisher takes notification webhooks: webhook.Outbox. Publish must store the event durably
// and once per id, and return without delivering it.
type Publisher interface {
	Publish(ctx context.Context, e webhook.Event) error
}

// WithPublisher makes d publish a digest.sent event with each digest and a
// rotation.safe_to_retire event with each nudge, whether or not a Slack channel gets them, and
// returns d.
func (d *Digest) WithPublisher(p Publisher) *Digest {
	d.publisher = p
	return d
}

// DigestData is the data of a digest.sent event: the digest scheduled at Scheduled, every
// rotation in flight as of At.
type DigestData struct {
	Scheduled time.Time `json:"scheduled"`
	Report
}

// digestEvent is the event of the digest scheduled at scheduled; its id is derived from the
// digest's key, the same key its Slack messages are posted once under.
func digestEvent(key string, scheduled time.Time, rep Report) webhook.Event {
	return webhook.Event{
		ID: webhook.EventID(key), Type: webhook.TypeDigestSent, Timestamp: scheduled,
		Data: DigestData{Scheduled: scheduled.UTC(), Report: rep},
	}
}

// safeEvent is the "safe to retire" event of rotation r, judged at now; its id is derived from
// the nudge's key, one per rotation.
func safeEvent(key string, r Rotation, now time.Time) webhook.Event {
	return webhook.Event{ID: webhook.EventID(key), Type: webhook.TypeRotationSafeRetire, Timestamp: now, Data: r}
}

// publish gives e to the publisher, if there is one.
func (d *Digest) publish(ctx context.Context, e webhook.Event) error {
	if d.publisher == nil {
		return nil
	}
	return d.publisher.Publish(ctx, e)
}
