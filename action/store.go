package action

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/schema"
)

// The states of an action, as stored (actions.state).
const (
	stateAwaiting = "awaiting_approval"
	// stateApproved is a revoke approved by a human (a Slack click, or the requester of a manual
	// revoke) that the leader has not yet counted against the hourly cap and queued.
	stateApproved = "approved"
	stateQueued   = "queued"
	stateSent     = "sent"
	stateFailed   = "failed"
	stateRefused  = "refused"
	stateDryRun   = "dry_run"
)

// record is one version of an action row.
type record struct {
	ID, Kind, KeyID, ClientID, AlertID, Reason, Mode, State, Guardrail, Detail string
	RequestedAt                                                                time.Time
	ApprovedBy                                                                 string
	QueuedAt                                                                   time.Time
	Body                                                                       string
	Attempts                                                                   uint32
	FirstAttemptAt, NextAttemptAt                                              time.Time
	LastStatus                                                                 uint16
	LastError                                                                  string
	UpdatedAt                                                                  time.Time
	Version                                                                    uint64
}

// AuditEntry is one row of the audit (action_audit): a decision about an action or an attempt to
// deliver it.
type AuditEntry struct {
	At                                       time.Time
	ActionID, Kind, KeyID, ClientID, AlertID string
	Event, Guardrail, Actor                  string
	HTTPStatus                               uint16
	Detail                                   string
}

const actionColumns = `id, kind, key_id, client_id, alert_id, reason, mode, toString(state), guardrail, detail, requested_at,
approved_by, queued_at, body, attempts, first_attempt_at, next_attempt_at, last_status, last_error, updated_at, version`

const (
	// insertAction stores a version of an action; its times are bound as Unix milliseconds (ms).
	insertAction = `INSERT INTO actions (id, kind, key_id, client_id, alert_id, reason, mode, state, guardrail, detail,
requested_at, approved_by, queued_at, body, attempts, first_attempt_at, next_attempt_at, last_status, last_error, updated_at, version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, ?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, ?,
        fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?)`
	selectAction = `SELECT ` + actionColumns + ` FROM actions FINAL WHERE id = ?`
	// selectOutcomesSince is the actions whose last version left them in an outcome state
	// (stateOutcome), written since a time (Unix ms), oldest first.
	selectOutcomesSince = `SELECT ` + actionColumns + ` FROM actions FINAL
WHERE state IN ('refused', 'dry_run', 'approved', 'queued', 'sent', 'failed') AND updated_at >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
ORDER BY updated_at, id`
	// selectDue is the queued actions whose next attempt is due. Argument: now (Unix ms; a bound time would be cut to the second).
	selectDue = `SELECT id FROM actions FINAL WHERE state = 'queued' AND next_attempt_at <= fromUnixTimestamp64Milli(toInt64(?), 'UTC') ORDER BY next_attempt_at, id`
	// selectApproved is the approved actions of a kind, in the order they were approved: what the
	// leader decides next. Argument: kind.
	selectApproved = `SELECT id FROM actions FINAL WHERE kind = ? AND state = 'approved' ORDER BY updated_at, id`
	// countQueued feeds keywatch_actions_queued.
	countQueued = `SELECT count() FROM actions FINAL WHERE state = 'queued'`
	// countSentSince is the hourly cap: actions committed to be sent (queued or sent) since a time (Unix ms).
	countSentSince = `SELECT count() FROM actions FINAL WHERE kind = ? AND state IN ('queued', 'sent') AND queued_at > fromUnixTimestamp64Milli(toInt64(?), 'UTC')`
	insertAudit    = `INSERT INTO action_audit (at, action_id, kind, key_id, client_id, alert_id, event, guardrail, actor, http_status, detail)
VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// selectSent is every action the receiver accepted: revokes and rollbacks. A sent action's last
	// version is written when the receiver accepted it, so its updated_at is when it took effect;
	// queued_at is when its body was fixed, before the first attempt. The table is small (the
	// hourly cap bounds it) and has no TTL.
	selectSent = `SELECT key_id, kind, updated_at, queued_at FROM actions FINAL WHERE state = 'sent' ORDER BY updated_at, id`
	// selectAudit is the whole audit, oldest first.
	selectAudit = `SELECT at, action_id, kind, key_id, client_id, alert_id, event, guardrail, actor, http_status, detail
FROM action_audit ORDER BY at, action_id`
	// selectPending is the actions awaiting a human's approval, oldest first, at most 500.
	selectPending = `SELECT id, kind, key_id, client_id, alert_id, reason, mode, detail, requested_at
FROM actions FINAL WHERE state = 'awaiting_approval' ORDER BY requested_at, id LIMIT 500`
	// selectAuditOf is the audit of one key and/or one alert episode (an empty argument selects
	// any), newest first. Arguments: key id twice, alert id twice, the limit. Within one
	// millisecond a delivery comes after the decision that queued it, so it is listed first.
	selectAuditOf = `SELECT at, action_id, kind, key_id, client_id, alert_id, event, guardrail, actor, http_status, detail
FROM action_audit WHERE (? = '' OR key_id = ?) AND (? = '' OR alert_id = ?)
ORDER BY at DESC, event IN ('attempt_failed', 'sent', 'failed') DESC, action_id
LIMIT ?`
)

// The limits of ReadAuditOf: its default and its cap.
const (
	defaultAuditLimit = 200
	maxAuditLimit     = 1000
)

// ms is t as bound to a query: Unix milliseconds, read with fromUnixTimestamp64Milli (package
// schema). A zero time (not queued, not attempted yet) is stored as the epoch.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// store reads and writes actions and their audit.
type store struct {
	conn driver.Conn
}

// load returns the action with id, or nil when there is none.
func (s store) load(ctx context.Context, id string) (*record, error) {
	rows, err := s.conn.Query(ctx, selectAction, id)
	if err != nil {
		return nil, fmt.Errorf("action: read action %s: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	r, err := scanRecord(rows)
	if err != nil {
		return nil, fmt.Errorf("action: read action %s: %w", id, err)
	}
	return r, rows.Err()
}

// outcomesSince returns the actions whose last version, written since a time, left them in a
// state that is an outcome (stateOutcome), oldest first.
func (s store) outcomesSince(ctx context.Context, since time.Time) ([]*record, error) {
	rows, err := s.conn.Query(ctx, selectOutcomesSince, since.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("action: read the actions decided since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	defer rows.Close()
	var out []*record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("action: read the actions decided since %s: %w", since.UTC().Format(time.RFC3339), err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// scanRecord reads the action of a row of actionColumns.
func scanRecord(rows driver.Rows) (*record, error) {
	var r record
	err := rows.Scan(&r.ID, &r.Kind, &r.KeyID, &r.ClientID, &r.AlertID, &r.Reason, &r.Mode, &r.State, &r.Guardrail, &r.Detail,
		&r.RequestedAt, &r.ApprovedBy, &r.QueuedAt, &r.Body, &r.Attempts, &r.FirstAttemptAt, &r.NextAttemptAt,
		&r.LastStatus, &r.LastError, &r.UpdatedAt, &r.Version)
	return &r, err
}

// save stores a new version of r (r.Version must have been raised by the caller).
func (s store) save(ctx context.Context, r *record) error {
	token := fmt.Sprintf("%s:v%d", r.ID, r.Version)
	err := schema.Retry(schema.WithInsertToken(ctx, token), time.Minute, func(ctx context.Context) error {
		return s.conn.Exec(ctx, insertAction, r.ID, r.Kind, r.KeyID, r.ClientID, r.AlertID, r.Reason, r.Mode, r.State,
			r.Guardrail, r.Detail, ms(r.RequestedAt), r.ApprovedBy, ms(r.QueuedAt), r.Body, r.Attempts, ms(r.FirstAttemptAt),
			ms(r.NextAttemptAt), r.LastStatus, r.LastError, ms(r.UpdatedAt), r.Version)
	})
	if err != nil {
		return fmt.Errorf("action: store %s %s of key %s (%s): %w", r.Kind, r.ID, r.KeyID, r.State, err)
	}
	return nil
}

// audit appends a row; token makes a retried insert of the same event count once.
func (s store) audit(ctx context.Context, token string, a AuditEntry) error {
	err := schema.Retry(schema.WithInsertToken(ctx, "audit:"+token), time.Minute, func(ctx context.Context) error {
		return s.conn.Exec(ctx, insertAudit, ms(a.At), a.ActionID, a.Kind, a.KeyID, a.ClientID, a.AlertID, a.Event,
			a.Guardrail, a.Actor, a.HTTPStatus, a.Detail)
	})
	if err != nil {
		return fmt.Errorf("action: audit %s of %s: %w", a.Event, a.ActionID, err)
	}
	return nil
}

func (s store) count(ctx context.Context, query string, args ...any) (uint64, error) {
	var n uint64
	if err := s.conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		return 0, err
	}
	return n, nil
}

func (s store) due(ctx context.Context, now time.Time) ([]string, error) {
	ids, err := s.ids(ctx, selectDue, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("action: read queued actions: %w", err)
	}
	return ids, nil
}

// ids runs query, which selects action ids.
func (s store) ids(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Querier runs a query: a driver.Conn, or a read-only connection of the caller's.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// Sent is an action the receiver accepted: its key, its kind (revoke, extend_grace, reactivate),
// when it was accepted and when its body was fixed (queued).
type Sent struct {
	KeyID, Kind string
	At, Queued  time.Time
}

// ReadSent returns every action the receiver accepted, in the order they took effect.
func ReadSent(ctx context.Context, q Querier) ([]Sent, error) {
	rows, err := q.Query(ctx, selectSent)
	if err != nil {
		return nil, fmt.Errorf("read the sent actions: %w", err)
	}
	defer rows.Close()
	var out []Sent
	for rows.Next() {
		var a Sent
		if err := rows.Scan(&a.KeyID, &a.Kind, &a.At, &a.Queued); err != nil {
			return nil, fmt.Errorf("read the sent actions: %w", err)
		}
		a.At, a.Queued = a.At.UTC(), a.Queued.UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// Pending is an action awaiting a human's approval.
type Pending struct {
	ID, Kind, KeyID, ClientID, AlertID, Reason, Mode, Detail string
	RequestedAt                                              time.Time
}

// ReadPending returns the actions awaiting approval, oldest first, at most 500.
func ReadPending(ctx context.Context, q Querier) ([]Pending, error) {
	rows, err := q.Query(ctx, selectPending)
	if err != nil {
		return nil, fmt.Errorf("read the pending actions: %w", err)
	}
	defer rows.Close()
	var out []Pending
	for rows.Next() {
		var p Pending
		if err := rows.Scan(&p.ID, &p.Kind, &p.KeyID, &p.ClientID, &p.AlertID, &p.Reason, &p.Mode, &p.Detail, &p.RequestedAt); err != nil {
			return nil, fmt.Errorf("read the pending actions: %w", err)
		}
		p.RequestedAt = p.RequestedAt.UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// AuditQuery selects audit entries: of one key and/or one alert episode (any when empty), newest
// first, at most Limit (default 200, capped at 1000).
type AuditQuery struct {
	KeyID, AlertID string
	Limit          int
}

// ReadAuditOf returns the audit entries aq selects, newest first.
func ReadAuditOf(ctx context.Context, q Querier, aq AuditQuery) ([]AuditEntry, error) {
	limit := aq.Limit
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	limit = min(limit, maxAuditLimit)
	rows, err := q.Query(ctx, selectAuditOf, aq.KeyID, aq.KeyID, aq.AlertID, aq.AlertID, limit)
	if err != nil {
		return nil, fmt.Errorf("read the action audit of key %q, alert %q: %w", aq.KeyID, aq.AlertID, err)
	}
	defer rows.Close()
	out, err := scanAudit(rows)
	if err != nil {
		return nil, fmt.Errorf("read the action audit of key %q, alert %q: %w", aq.KeyID, aq.AlertID, err)
	}
	return out, nil
}

// scanAudit reads the audit entries of rows of selectAudit's columns.
func scanAudit(rows driver.Rows) ([]AuditEntry, error) {
	var out []AuditEntry
	for rows.Next() {
		var a AuditEntry
		if err := rows.Scan(&a.At, &a.ActionID, &a.Kind, &a.KeyID, &a.ClientID, &a.AlertID, &a.Event, &a.Guardrail, &a.Actor,
			&a.HTTPStatus, &a.Detail); err != nil {
			return nil, err
		}
		a.At = a.At.UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// ReadAudit returns the audit (every decision and delivery attempt of every action), oldest first.
func ReadAudit(ctx context.Context, q Querier) ([]AuditEntry, error) {
	rows, err := q.Query(ctx, selectAudit)
	if err != nil {
		return nil, fmt.Errorf("read the action audit: %w", err)
	}
	defer rows.Close()
	out, err := scanAudit(rows)
	if err != nil {
		return nil, fmt.Errorf("read the action audit: %w", err)
	}
	return out, nil
}
