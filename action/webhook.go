package action

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/keywatch/keywatch/internal/backoff"
	"github.com/keywatch/keywatch/webhook"
)

// errNotConfigured fails an action at once: retrying will not fix the configuration.
var errNotConfigured = errors.New("the revoke webhook is not configured")

// Run is the leader's loop, until ctx ends: each pass (SendDue) decides the approved revokes and
// attempts every due action. Only the leader runs it, so it is, across replicas and the CLI, the
// one place approved revokes are counted against revoke.max_per_hour and the one sender of every
// action. A request stored by this process wakes it at once; others' are taken within a poll.
func (r *Revoker) Run(ctx context.Context) error {
	t := time.NewTicker(r.poll)
	defer t.Stop()
	r.unpublished.Store(true) // the last leader may have stored an outcome it did not publish
	for {
		if err := r.SendDue(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("revoke delivery pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.wake:
		}
	}
}

// SendDue is one pass of Run: it publishes outcomes again if one could not be published
// (republish), decides the approved revokes (decideApproved), then makes one attempt at every
// queued action whose next attempt is due.
func (r *Revoker) SendDue(ctx context.Context) error {
	var errs []error
	if r.unpublished.Load() {
		if err := r.republish(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.decideApproved(ctx); err != nil {
		errs = append(errs, err)
	}
	ids, err := r.store.due(ctx, r.now().UTC())
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, id := range ids {
		if _, err := r.attempt(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	if n, err := r.store.count(ctx, countQueued); err == nil {
		r.metrics.setQueued(n)
	}
	return errors.Join(errs...)
}

// attempt sends a queued action once and records the answer. An action that is not queued is
// returned as it is.
func (r *Revoker) attempt(ctx context.Context, id string) (*record, error) {
	rec, err := r.store.load(ctx, id)
	if err != nil || rec == nil || rec.State != stateQueued {
		return rec, err
	}
	if rec.NextAttemptAt.After(r.now()) {
		return rec, nil
	}
	if IsRollback(rec.Kind) {
		// A key may have leaked since the rollback was decided (or between its retries): then it
		// is never rolled back, whatever was decided.
		leak, err := r.leaked(ctx, rec.KeyID)
		if err != nil {
			return rec, err
		}
		if leak != "" {
			return r.refuseLeaked(ctx, rec, leak)
		}
	}
	n := rec.Attempts + 1
	answer, sendErr := r.send(ctx, rec)
	code, retryAfter, excerpt := answer.Status, answer.RetryAfter, answer.Excerpt
	if ctx.Err() != nil {
		return rec, ctx.Err() // unrecorded: the next run sends it again with the same id
	}
	if r.afterSend != nil && r.afterSend(id) {
		return rec, errors.New("action: abandoned after send (test hook)")
	}
	now := r.now().UTC()
	if rec.FirstAttemptAt.IsZero() || rec.FirstAttemptAt.Unix() <= 0 {
		rec.FirstAttemptAt = now
	}
	rec.Attempts, rec.LastStatus, rec.UpdatedAt = n, uint16(code), now
	rec.Version++
	token := fmt.Sprintf("%s:attempt:%d", id, n)
	statusLabel := strconv.Itoa(code)
	detail := ""
	event := ""
	switch {
	case sendErr == nil && code >= 200 && code < 300:
		rec.State, rec.LastError, rec.Detail = stateSent, "", fmt.Sprintf("sent: the receiver answered %d", code)
		event = "sent"
		detail = rec.Detail
	case errors.Is(sendErr, errNotConfigured):
		statusLabel = "error"
		rec.State, rec.LastError = stateFailed, sendErr.Error()
		rec.Detail = "failed: " + rec.LastError
		event, detail = "failed", rec.Detail
	case sendErr != nil || code >= 500 || code == http.StatusTooManyRequests:
		if sendErr != nil {
			statusLabel = "error"
			rec.LastError = sendErr.Error()
		} else {
			rec.LastError = fmt.Sprintf("the receiver answered %d", code)
		}
		event = "attempt_failed"
		detail = fmt.Sprintf("attempt %d: %s", n, rec.LastError)
		next, last := r.nextAttempt(rec.FirstAttemptAt, now, n, retryAfter)
		when := ""
		switch {
		case next.IsZero():
			rec.State = stateFailed
			rec.Detail = fmt.Sprintf("failed after %d attempts over revoke.retry_for: %s", n, rec.LastError)
		case last:
			rec.NextAttemptAt = next
			when = fmt.Sprintf("once more at %s, past the end of revoke.retry_for", next.Format(time.RFC3339))
		default:
			rec.NextAttemptAt = next
			when = "at " + next.Format(time.RFC3339)
		}
		if when != "" {
			if retryAfter > 0 {
				when += fmt.Sprintf(" (the receiver's Retry-After: %s)", retryAfter)
			}
			rec.Detail = fmt.Sprintf("retrying %s; attempt %d failed: %s", when, n, rec.LastError)
			detail += "; retrying " + when
		}
	default:
		rec.State = stateFailed
		rec.LastError = fmt.Sprintf("the receiver answered %d: %q", code, excerpt)
		rec.Detail = "failed: " + rec.LastError
		event = "failed"
		detail = rec.Detail
	}
	r.metrics.attempt(statusLabel)
	if err := r.store.save(ctx, rec); err != nil {
		return rec, err
	}
	if event == "attempt_failed" && rec.State == stateFailed {
		event, detail = "failed", rec.Detail // the last attempt: one row saying it failed for good
	}
	if err := r.auditOf(ctx, rec, token, AuditEntry{Event: event, Actor: "auto", HTTPStatus: uint16(code), Detail: detail}); err != nil {
		return rec, err
	}
	r.publish(ctx, rec, event)
	switch rec.State {
	case stateSent:
		r.result(rec.Kind, "sent")
		r.log.Info("action sent", "kind", rec.Kind, "action", id, "key", rec.KeyID, "status", code, "attempts", n)
	case stateFailed:
		r.result(rec.Kind, "failed")
		r.log.Error("action failed", "kind", rec.Kind, "action", id, "key", rec.KeyID, "status", code, "attempts", n, "err", rec.LastError)
	default:
		r.log.Warn("action attempt failed; retrying", "kind", rec.Kind, "action", id, "key", rec.KeyID, "status", code, "attempt", n, "next", rec.NextAttemptAt, "err", rec.LastError)
	}
	return rec, nil
}

// nextAttempt is when to retry after failed attempt n, made at now, or zero when that attempt was
// the last. Retries run for revoke.retry_for from the first attempt (0: none), with backoff, and
// never before the receiver's Retry-After. The retry that would fall past the end of retry_for is
// still made, once (last true): at the receiver's Retry-After when it gave one, else at the end of
// retry_for. A Retry-After further than one more retry_for past the end is cut to it, so an action
// is decided within twice revoke.retry_for of its first attempt.
func (r *Revoker) nextAttempt(first, now time.Time, n uint32, retryAfter time.Duration) (next time.Time, last bool) {
	window := time.Duration(r.cfg.RetryFor)
	end := first.Add(window)
	if window <= 0 || !now.Before(end) {
		return time.Time{}, false
	}
	wait := r.backoffAfter(n)
	if retryAfter > 0 {
		wait = retryAfter
	}
	if next = now.Add(wait); !next.After(end) {
		return next, false
	}
	if retryAfter > 0 {
		return minTime(next, end.Add(window)), true
	}
	return end, true
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// backoffAfter is the wait after failed attempt n: exponential with full jitter.
func (r *Revoker) backoffAfter(n uint32) time.Duration {
	return backoff.Policy{Initial: r.backoff, Max: r.maxBackoff, Jitter: backoff.Full}.WaitWith(int(n), r.rand)
}

// send POSTs the action's stored body to revoke.webhook_url, signed, within revoke.timeout.
func (r *Revoker) send(ctx context.Context, rec *record) (webhook.Answer, error) {
	if r.cfg.WebhookURL == "" {
		return webhook.Answer{}, fmt.Errorf("%w: revoke.webhook_url is not set", errNotConfigured)
	}
	if r.secret == nil {
		if _, err := webhook.DecodeSecret(r.cfg.WebhookSecret); err != nil {
			return webhook.Answer{}, fmt.Errorf("%w: revoke.webhook_secret: %v", errNotConfigured, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(r.cfg.Timeout))
	defer cancel()
	return webhook.Post(ctx, r.client, r.cfg.WebhookURL, r.secret, rec.ID, r.now(), []byte(rec.Body))
}
