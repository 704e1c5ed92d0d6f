package alerting

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/schema"
)

// The events of an alert's history (Change.Event, alert_history.event).
const (
	EventPending     = "pending"     // a new episode was found
	EventFiring      = "firing"      // it started firing
	EventResolved    = "resolved"    // it resolved, fired or not
	EventSilenced    = "silenced"    // Detail: the silence's id
	EventUnsilenced  = "unsilenced"  // Detail: the silence that muted it until then
	EventInhibited   = "inhibited"   // Detail: the inhibiting alert's fingerprint
	EventUninhibited = "uninhibited" // Detail: the alert that inhibited it until then
	EventAction      = "action"      // Detail: the action's kind and status, then its detail
)

// historyEventOrder is the order in which one pass makes an alert's changes: its state's first,
// then its muting's, then its action's (asked after the alerts are stored).
const historyEventOrder = `['pending', 'firing', 'unsilenced', 'silenced', 'uninhibited', 'inhibited', 'action', 'resolved']`

const (
	insertHistory = `INSERT INTO alert_history (fingerprint, at, alert_id, event, detail)`

	// selectHistory is the latest changes of an alert, newest first; the changes of one pass share
	// its time and are ordered as the pass makes them (historyEventOrder). Arguments: fingerprint,
	// limit.
	selectHistory = `SELECT at, alert_id, toString(event), detail
FROM alert_history FINAL
WHERE fingerprint = ?
ORDER BY at DESC, indexOf(` + historyEventOrder + `, toString(event)) DESC
LIMIT ?`
)

// Change is one entry of an alert's history.
type Change struct {
	At time.Time
	// AlertID is the episode's id (Alert.ID); empty while it was pending.
	AlertID string
	// Event is one of the Event constants; Detail says more for some of them.
	Event, Detail string
}

// historyRow is a Change of the alert with Fingerprint.
type historyRow struct {
	Fingerprint string
	Change
}

// changes returns the history rows of the change of an alert from before to after, both as of one
// pass at now: only what a person cares about, not its latest finding's score or evidence. before
// is the zero Alert for an alert not stored before.
func changes(before, after Alert, now time.Time) []historyRow {
	var out []historyRow
	add := func(event, detail string) {
		id := ""
		if event != EventPending && !after.FiredAt.IsZero() {
			id = after.ID()
		}
		out = append(out, historyRow{Fingerprint: after.Fingerprint, Change: Change{At: now, AlertID: id, Event: event, Detail: detail}})
	}
	if !after.ActiveSince.Equal(before.ActiveSince) || before.Fingerprint == "" {
		// A new episode: what the last one had (state, muting, action) is not its change.
		before = Alert{}
		if after.Detector != DegradedDetector { // raised firing: it was never pending
			add(EventPending, "")
		}
	}
	if after.State != before.State {
		switch after.State {
		case Firing:
			add(EventFiring, "")
		case Resolved:
			add(EventResolved, "")
		}
	}
	switch {
	case after.Silenced == before.Silenced:
	case after.Silenced != "":
		add(EventSilenced, after.Silenced)
	default:
		add(EventUnsilenced, before.Silenced)
	}
	switch {
	case after.Inhibited == before.Inhibited:
	case after.Inhibited != "":
		add(EventInhibited, after.Inhibited)
	default:
		add(EventUninhibited, before.Inhibited)
	}
	if a, b := after.Action, before.Action; a != nil && (b == nil || a.ID != b.ID || a.Kind != b.Kind || a.Status != b.Status) {
		detail := a.Kind + " " + a.Status
		if a.Detail != "" {
			detail += ": " + a.Detail
		}
		add(EventAction, detail)
	}
	return out
}

// writeHistory stores rows in one insert. Written again after a failure, the rows replace
// themselves (alert_history's ORDER BY is their identity).
func writeHistory(ctx context.Context, conn driver.Conn, rows []historyRow) error {
	if len(rows) == 0 {
		return nil
	}
	return schema.Retry(ctx, time.Minute, func(ctx context.Context) error {
		b, err := conn.PrepareBatch(ctx, insertHistory)
		if err != nil {
			return err
		}
		defer b.Abort()
		for _, r := range rows {
			if err := b.Append(r.Fingerprint, r.At, r.AlertID, r.Event, r.Detail); err != nil {
				return err
			}
		}
		return b.Send()
	})
}

// History returns the latest changes of the alert with fingerprint, newest first, at most limit
// (<=0: 100). The changes of one evaluation share its time and come in the order it made them.
// History is kept 90 days.
func (r *Reader) History(ctx context.Context, fingerprint string, limit int) ([]Change, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := r.conn.Query(ctx, selectHistory, fingerprint, limit)
	if err != nil {
		return nil, fmt.Errorf("read the history of alert %s: %w", fingerprint, err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		if err := rows.Scan(&c.At, &c.AlertID, &c.Event, &c.Detail); err != nil {
			return nil, fmt.Errorf("read the history of alert %s: %w", fingerprint, err)
		}
		c.At = c.At.UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the history of alert %s: %w", fingerprint, err)
	}
	return out, nil
}
