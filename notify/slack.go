package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/slack-go/slack"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/internal/backoff"
	"github.com/keywatch/keywatch/internal/config"
)

// metadataEventType marks keywatch's messages in Slack; the payload carries the notification id.
const metadataEventType = "keywatch_notification"

var _ alerting.Notifier = (*Slack)(nil)

// Slack is the alerting.Notifier that posts to Slack: Notify records what a message should show
// in the outbox (the notifications table), Run delivers the outbox.
type Slack struct {
	store    store
	client   *slack.Client // nil without a token
	render   renderer
	minGap   time.Duration
	metrics  *Metrics
	log      *slog.Logger
	now      func() time.Time
	backoff  time.Duration // first retry delay after a 5xx or network error
	maxWait  time.Duration // longest retry delay
	idleTick time.Duration // how often Run looks at the outbox without being woken

	wake chan struct{}

	mu         sync.Mutex
	rows       map[rowKey]*row      // the outbox, and the latest episode of each group seen
	latest     map[[2]string]uint32 // group, channel -> latest episode known in rows
	lastCall   map[string]time.Time // channel -> when the last Slack call to it may be counted from
	channelIDs map[string]string    // channel name -> conversation id, as looked up
	loaded     bool                 // the pending rows were read back
	lastVer    uint64
}

// NewSlack returns a notifier over conn. Without cfg.Token it keeps notifications in the outbox.
func NewSlack(conn driver.Conn, cfg config.Slack, metrics *Metrics, log *slog.Logger) *Slack {
	s := &Slack{
		store: store{conn: conn}, render: newRenderer(cfg), minGap: time.Duration(cfg.MinInterval),
		metrics: metrics, log: log, now: time.Now,
		backoff: time.Second, maxWait: 5 * time.Minute, idleTick: time.Second,
		wake: make(chan struct{}, 1),
		rows: map[rowKey]*row{}, latest: map[[2]string]uint32{}, lastCall: map[string]time.Time{}, channelIDs: map[string]string{},
	}
	if cfg.Token != "" {
		// slack-go retries nothing unless told to (OptionRetry); the outbox does the retrying.
		s.client = slack.New(cfg.Token, slack.OptionAPIURL(cfg.APIURL), slack.OptionHTTPClient(&http.Client{Timeout: 30 * time.Second}))
	}
	return s
}

// Notify makes n durable in the outbox and returns; Run delivers it. A notification whose content
// is what its message already shows (or will show) changes nothing.
func (s *Slack) Notify(ctx context.Context, n alerting.Notification) error {
	if n.Channel == "" || n.Group.Key == "" {
		return fmt.Errorf("notify: notification without channel (%q) or group (%q)", n.Channel, n.Group.Key)
	}
	msg := s.render.render(n)
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("notify: render group %s for %s: %w", n.Group.Key, n.Channel, err)
	}
	payload := string(b)
	hash := contentHash(payload)

	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.latestLocked(ctx, n.Group.Key, n.Channel)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	var next row
	switch {
	case cur == nil && n.Group.Resolved:
		return nil // nothing was shown: nothing to resolve
	case cur == nil || (cur.Resolved == 1 && !n.Group.Resolved):
		// A new message: the group's first, or it fires again after it resolved.
		ep := uint32(1)
		if cur != nil {
			ep = cur.Episode + 1
		}
		next = row{GroupKey: n.Group.Key, Channel: n.Channel, Episode: ep, NotificationID: notificationID(n.Group.Key, n.Channel, ep),
			State: statePending, Payload: payload, ContentHash: hash, NextAttemptAt: now, CreatedAt: now}
	default:
		next = *cur
		changed := cur.ContentHash != hash
		if !changed && !(n.Reminder && cur.Resolved == 0) {
			return nil
		}
		if changed {
			next.Payload, next.ContentHash = payload, hash
			if n.Group.Resolved && cur.Resolved == 0 {
				next.Resolved, next.Reply = 1, "resolved"
			}
		}
		if n.Reminder && !changed && cur.Resolved == 0 {
			if cur.Reply != "" || cur.TS == "" && cur.State == statePending {
				return nil // a reply or the message itself is still on its way
			}
			next.Reply = "reminder"
		}
		if next.TS == "" && next.InFlight == 0 && next.Reply != "" {
			next.Reply = "" // the first post will show it
		}
		if next.State != statePending {
			next.State, next.Attempts, next.LastError, next.NextAttemptAt = statePending, 0, "", now
		}
	}
	if err := s.putLocked(ctx, &next); err != nil {
		return err
	}
	s.kick()
	return nil
}

// latestLocked returns the newest episode of a group in a channel, from memory or the table.
func (s *Slack) latestLocked(ctx context.Context, group, channel string) (*row, error) {
	if ep, ok := s.latest[[2]string{group, channel}]; ok {
		if r, ok := s.rows[rowKey{group, channel, ep}]; ok {
			return r, nil
		}
	}
	r, err := s.store.latest(ctx, group, channel)
	if err != nil || r == nil {
		return nil, err
	}
	s.remember(r)
	return r, nil
}

func (s *Slack) remember(r *row) {
	s.rows[r.key()] = r
	lk := [2]string{r.GroupKey, r.Channel}
	if ep, ok := s.latest[lk]; !ok || r.Episode >= ep {
		s.latest[lk] = r.Episode
	}
	s.lastVer = max(s.lastVer, r.Version)
}

// putLocked stores a new version of r and keeps it in memory.
func (s *Slack) putLocked(ctx context.Context, r *row) error {
	now := s.now().UTC()
	r.UpdatedAt = now
	r.Version = max(uint64(now.UnixNano()), s.lastVer+1)
	if err := s.store.write(ctx, r); err != nil {
		return err
	}
	cp := *r
	s.remember(&cp)
	s.forgetDelivered()
	return nil
}

// forgetDelivered drops delivered rows that are not their group's latest episode, and depth.
func (s *Slack) forgetDelivered() {
	depth := 0
	for k, r := range s.rows {
		if r.State == statePending {
			depth++
			continue
		}
		if s.latest[[2]string{k.group, k.channel}] != k.episode {
			delete(s.rows, k)
		}
	}
	s.metrics.depth(depth)
}

func (s *Slack) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers the outbox until ctx ends: first the rows left pending by an earlier run, then
// whatever Notify adds. Slack calls are paced per channel (slack.min_interval) and retried.
func (s *Slack) Run(ctx context.Context) error {
	for {
		if err := s.load(ctx); err == nil {
			break
		} else {
			s.log.Warn("notify: cannot read the outbox yet, retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	if s.client == nil {
		s.mu.Lock()
		depth := 0
		for _, r := range s.rows {
			if r.State == statePending {
				depth++
			}
		}
		s.mu.Unlock()
		s.log.Warn("notify: Slack is not configured (slack.token): notifications stay in the outbox", "outbox", depth)
		<-ctx.Done()
		return nil
	}
	for {
		wait := s.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-s.wake:
			case <-t.C:
			}
			t.Stop()
		}
	}
}

func (s *Slack) load(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded {
		return nil
	}
	rows, err := s.store.pending(ctx)
	if err != nil {
		return err
	}
	for i := range rows {
		r := rows[i]
		if cur, ok := s.rows[r.key()]; ok && cur.Version >= r.Version {
			continue
		}
		s.remember(&r)
	}
	s.loaded = true
	s.forgetDelivered()
	return nil
}

// step makes at most one Slack call, for the most overdue row whose channel may be called now,
// and returns how long to wait before the next step (0: at once).
func (s *Slack) step(ctx context.Context) time.Duration {
	s.mu.Lock()
	now := s.now()
	var due []*row
	for _, r := range s.rows {
		if r.State == statePending {
			due = append(due, r)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].NextAttemptAt.Equal(due[j].NextAttemptAt) {
			return due[i].NextAttemptAt.Before(due[j].NextAttemptAt)
		}
		return due[i].Version < due[j].Version
	})
	wait := s.idleTick
	var pick *row
	for _, r := range due {
		// Episodes of a group in a channel go in order.
		if s.earlierPending(r) {
			continue
		}
		at := r.NextAttemptAt
		if last, ok := s.lastCall[r.Channel]; ok {
			at = maxTime(at, last.Add(s.minGap))
		}
		if !at.After(now) {
			pick = r
			break
		}
		wait = min(wait, at.Sub(now))
	}
	if pick == nil {
		s.mu.Unlock()
		return wait
	}
	work := *pick
	s.lastCall[work.Channel] = now
	s.mu.Unlock()

	s.deliver(ctx, work)
	// Pacing counts from the end of the call, so the gap holds at Slack whatever the latency.
	s.mu.Lock()
	s.lastCall[work.Channel] = maxTime(s.lastCall[work.Channel], s.now())
	s.mu.Unlock()
	return 0
}

func (s *Slack) earlierPending(r *row) bool {
	for ep := r.Episode - 1; ep >= 1 && ep < r.Episode; ep-- {
		if o, ok := s.rows[rowKey{r.GroupKey, r.Channel, ep}]; ok && o.State == statePending {
			return true
		}
	}
	return false
}

// deliver makes the one Slack call w needs next and records its outcome.
func (s *Slack) deliver(ctx context.Context, w row) {
	var msg message
	if err := json.Unmarshal([]byte(w.Payload), &msg); err != nil {
		s.record(ctx, w, func(r *row) { s.fail(r, "bad_payload", err) })
		return
	}
	switch {
	case w.TS == "" && w.InFlight == 1:
		// A post may have gone out before we lost track of it: look for it before posting again.
		channelID, ts, err := s.findPosted(ctx, w)
		if err != nil {
			s.record(ctx, w, func(r *row) { s.failOrRetry(r, err) })
			return
		}
		if ts != "" {
			s.metrics.sentInc(w.Channel, "adopt")
			s.log.Info("notify: adopted a message posted before a restart", "channel", w.Channel, "group", w.GroupKey, "ts", ts)
			s.record(ctx, w, func(r *row) {
				r.TS, r.ChannelID, r.SentHash, r.InFlight = ts, channelID, w.InFlightHash, 0
				s.progress(r)
			})
			return
		}
		// Not in the channel: it was never posted.
		s.record(ctx, w, func(r *row) { r.InFlight = 0; s.progress(r) })
	case w.TS == "":
		// Record the attempt before it is made, so a crash after Slack took it is recoverable.
		if err := s.record(ctx, w, func(r *row) {
			if r.FirstAttemptAt.IsZero() || r.FirstAttemptAt.Unix() <= 0 {
				r.FirstAttemptAt = s.now().UTC()
			}
			r.InFlight, r.InFlightHash = 1, w.ContentHash
		}); err != nil {
			return // not posted without the mark; the next attempt looks in the history first
		}
		channelID, ts, err := s.client.PostMessageContext(ctx, w.Channel,
			slack.MsgOptionText(msg.Text, false), slack.MsgOptionBlocks(msg.Blocks.BlockSet...),
			slack.MsgOptionMetadata(slack.SlackMetadata{EventType: metadataEventType, EventPayload: map[string]any{"notification_id": w.NotificationID}}))
		if err != nil {
			s.record(ctx, w, func(r *row) {
				if definite(err) {
					r.InFlight = 0 // Slack answered: nothing was posted
				}
				s.failOrRetry(r, err)
			})
			return
		}
		s.metrics.sentInc(w.Channel, "post")
		s.record(ctx, w, func(r *row) {
			r.TS, r.ChannelID, r.SentHash, r.InFlight = ts, channelID, w.ContentHash, 0
			s.progress(r)
		})
	case w.InFlight == 1:
		// A thread reply may have gone out before we lost track of it.
		found, err := s.findReply(ctx, w)
		if err != nil {
			s.record(ctx, w, func(r *row) { s.failOrRetry(r, err) })
			return
		}
		if found {
			s.metrics.sentInc(w.Channel, "adopt")
		}
		s.record(ctx, w, func(r *row) {
			r.InFlight = 0
			if found && r.Reply == w.Reply {
				r.Reply = ""
			}
			s.progress(r)
		})
	case w.SentHash != w.ContentHash:
		channelID, err := s.conversation(ctx, w)
		if err == nil {
			_, _, _, err = s.client.UpdateMessageContext(ctx, channelID, w.TS,
				slack.MsgOptionText(msg.Text, false), slack.MsgOptionBlocks(msg.Blocks.BlockSet...))
		}
		if err != nil {
			s.record(ctx, w, func(r *row) { s.failOrRetry(r, err) })
			return
		}
		s.metrics.sentInc(w.Channel, "update")
		s.record(ctx, w, func(r *row) { r.SentHash = w.ContentHash; s.progress(r) })
	case w.Reply != "":
		text := msg.Reminder
		if w.Reply == "resolved" {
			text = msg.Resolved
		}
		channelID, err := s.conversation(ctx, w)
		if err != nil {
			s.record(ctx, w, func(r *row) { s.failOrRetry(r, err) })
			return
		}
		seq := w.ReplySeq + 1
		if err := s.record(ctx, w, func(r *row) { r.InFlight, r.ReplySeq = 1, seq }); err != nil {
			return
		}
		_, _, err = s.client.PostMessageContext(ctx, channelID, slack.MsgOptionText(text, false), slack.MsgOptionTS(w.TS),
			slack.MsgOptionMetadata(slack.SlackMetadata{EventType: metadataEventType, EventPayload: map[string]any{
				"notification_id": w.NotificationID, "reply_seq": strconv.FormatUint(uint64(seq), 10)}}))
		if err != nil {
			s.record(ctx, w, func(r *row) {
				if definite(err) {
					r.InFlight = 0
				}
				s.failOrRetry(r, err)
			})
			return
		}
		s.metrics.sentInc(w.Channel, "reply")
		s.record(ctx, w, func(r *row) {
			r.InFlight = 0
			if r.Reply == w.Reply {
				r.Reply = ""
			}
			s.progress(r)
		})
	default:
		s.record(ctx, w, func(r *row) { s.progress(r) })
	}
}

// progress marks r sent when Slack shows what it should, else leaves it due at once.
func (s *Slack) progress(r *row) {
	r.Attempts, r.LastError, r.NextAttemptAt = 0, "", s.now().UTC()
	if r.TS != "" && r.SentHash == r.ContentHash && r.Reply == "" {
		r.State = stateSent
	} else {
		r.State = statePending
	}
}

// record applies change to the current version of w's row (Notify may have changed it meanwhile)
// and stores it. Until ClickHouse takes it, the change stays in memory only and the row is retried.
func (s *Slack) record(ctx context.Context, w row, change func(*row)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.rows[w.key()]
	if !ok {
		cp := w
		cur = &cp
	}
	next := *cur
	change(&next)
	err := s.putLocked(ctx, &next)
	if err != nil {
		s.log.Error("notify: cannot record a delivery step; retrying", "channel", w.Channel, "group", w.GroupKey, "err", err)
		// Keep it in memory so that the Slack side is not repeated, pending, so that the next step
		// stores it again.
		next.State = statePending
		next.NextAttemptAt = maxTime(next.NextAttemptAt, s.now().Add(5*time.Second))
		s.remember(&next)
	}
	return err
}

// failOrRetry schedules a retry for transient errors and marks the row failed for the rest.
func (s *Slack) failOrRetry(r *row, err error) {
	now := s.now().UTC()
	r.Attempts++
	r.LastError = err.Error()
	var rl *slack.RateLimitedError
	switch {
	case errors.As(err, &rl):
		r.NextAttemptAt = now.Add(rl.RetryAfter)
		// The whole channel waits: Slack limits per channel.
		s.lastCall[r.Channel] = maxTime(s.lastCall[r.Channel], now.Add(rl.RetryAfter-s.minGap))
		s.metrics.retriedInc(r.Channel)
		s.log.Warn("notify: Slack rate-limited, waiting", "channel", r.Channel, "retry_after", rl.RetryAfter)
	case retryable(err):
		r.NextAttemptAt = now.Add(s.delay(r.Attempts))
		s.metrics.retriedInc(r.Channel)
		s.log.Warn("notify: Slack call failed, will retry", "channel", r.Channel, "group", r.GroupKey, "attempt", r.Attempts, "err", err)
	default:
		s.fail(r, reason(err), err)
	}
}

func (s *Slack) fail(r *row, why string, err error) {
	r.State, r.LastError = stateFailed, err.Error()
	s.metrics.failedInc(r.Channel, why)
	s.log.Error("notify: Slack refused the notification; kept as failed until its content changes",
		"channel", r.Channel, "group", r.GroupKey, "reason", why, "err", err)
}

// delay is the exponential backoff with ±25% jitter after the n-th failed attempt.
func (s *Slack) delay(n uint32) time.Duration {
	return backoff.Policy{Initial: s.backoff, Max: s.maxWait, Jitter: backoff.Spread}.Wait(int(n))
}

// findPosted looks in the channel's history since the first attempt for a message carrying w's
// notification id, and returns the channel's id and the message's ts ("" when there is none).
func (s *Slack) findPosted(ctx context.Context, w row) (string, string, error) {
	channelID, err := s.conversation(ctx, w)
	if err != nil {
		return "", "", err
	}
	params := &slack.GetConversationHistoryParameters{
		ChannelID: channelID, IncludeAllMetadata: true, Limit: 200, Inclusive: true,
		Oldest: fmt.Sprintf("%d.000000", w.FirstAttemptAt.Add(-time.Second).Unix()),
	}
	for {
		resp, err := s.client.GetConversationHistoryContext(ctx, params)
		if err != nil {
			return "", "", err
		}
		for _, m := range resp.Messages {
			p := m.Metadata.EventPayload
			if m.Metadata.EventType == metadataEventType && p["notification_id"] == w.NotificationID && p["reply_seq"] == nil {
				return channelID, m.Timestamp, nil
			}
		}
		if !resp.HasMore || resp.ResponseMetaData.NextCursor == "" {
			return channelID, "", nil
		}
		params.Cursor = resp.ResponseMetaData.NextCursor
	}
}

// findReply looks in the message's thread for the reply w had in flight (its reply_seq).
func (s *Slack) findReply(ctx context.Context, w row) (bool, error) {
	channelID, err := s.conversation(ctx, w)
	if err != nil {
		return false, err
	}
	params := &slack.GetConversationRepliesParameters{ChannelID: channelID, Timestamp: w.TS, IncludeAllMetadata: true, Limit: 200}
	want := strconv.FormatUint(uint64(w.ReplySeq), 10)
	for {
		msgs, more, cursor, err := s.client.GetConversationRepliesContext(ctx, params)
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			p := m.Metadata.EventPayload
			if m.Metadata.EventType == metadataEventType && p["notification_id"] == w.NotificationID && p["reply_seq"] == want {
				return true, nil
			}
		}
		if !more || cursor == "" {
			return false, nil
		}
		params.Cursor = cursor
	}
}

// definite reports whether Slack answered err, so that nothing was done.
func definite(err error) bool {
	var rl *slack.RateLimitedError
	var se slack.SlackErrorResponse
	return errors.As(err, &rl) || errors.As(err, &se)
}

// retryable: 5xx, a 429 without Retry-After, and anything that is not Slack's answer (network).
func retryable(err error) bool {
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return sc.Code >= 500 || sc.Code == http.StatusTooManyRequests
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err == "ratelimited" || se.Err == "internal_error" || se.Err == "fatal_error" || se.Err == "service_unavailable"
	}
	return true
}

func reason(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return fmt.Sprintf("http_%d", sc.Code)
	}
	return "error"
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
