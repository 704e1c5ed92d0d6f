package notify

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/slack-go/slack"
)

// postGroupPrefix keeps the group keys of posts apart from alerting's group keys in the outbox.
const postGroupPrefix = "post|"

// Post is a message of its own rather than an alert group's (a rotation digest, a "safe to
// retire" nudge), delivered through the same outbox as alert notifications.
type Post struct {
	// Key identifies the message: at most one message per key and channel is ever posted.
	Key     string
	Channel string
	// Text and Blocks are mrkdwn as given: every value in them that keywatch did not write
	// itself (ids, reasons, names) must be put in with MrkdwnValue, or it can mention @channel
	// or show a disguised link.
	Text   string       // the notification text; also the message when Blocks is empty
	Blocks slack.Blocks // optional Block Kit layout
}

// Post makes p durable in the outbox unless a message with p's key was already recorded for its
// channel (by this run, an earlier one or another replica), and reports whether it queued p. Run
// delivers it with the pacing, retries and crash recovery of alert notifications, so a restart
// neither loses nor repeats it.
func (s *Slack) Post(ctx context.Context, p Post) (bool, error) {
	if p.Key == "" || p.Channel == "" || p.Text == "" {
		return false, fmt.Errorf("notify: post without key (%q), channel (%q) or text", p.Key, p.Channel)
	}
	msg := message{Text: p.Text, Blocks: p.Blocks}
	if len(msg.Blocks.BlockSet) == 0 {
		msg.Blocks.BlockSet = []slack.Block{slack.NewSectionBlock(markdown(p.Text), nil, nil)}
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return false, fmt.Errorf("notify: render post %s for %s: %w", p.Key, p.Channel, err)
	}
	group := postGroupPrefix + p.Key

	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.latestLocked(ctx, group, p.Channel)
	if err != nil {
		return false, err
	}
	if cur != nil {
		return false, nil
	}
	now := s.now().UTC()
	r := row{GroupKey: group, Channel: p.Channel, Episode: 1, NotificationID: notificationID(group, p.Channel, 1),
		State: statePending, Payload: string(b), ContentHash: contentHash(string(b)), NextAttemptAt: now, CreatedAt: now}
	if err := s.putLocked(ctx, &r); err != nil {
		return false, err
	}
	s.kick()
	return true, nil
}
