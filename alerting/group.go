package alerting

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/label"
)

// groupChannel is what notification timers are kept per.
type groupChannel struct{ group, channel string }

// sentState is what a group's channel was last told.
type sentState struct {
	hash     string
	resolved bool
	at       time.Time
	version  uint64
	dirty    bool // notified, but not yet stored in alert_notifications_state
}

// GroupKey is the group an alert is notified in (Group.Key): its rotation's ("rotation:<id>"),
// else its key's ("key:<id>"); a degraded alert is in its failing detector's ("detector:<name>").
func GroupKey(a Alert) string {
	if a.Detector == DegradedDetector {
		if d := a.Labels[LabelFailingDetector]; d != "" {
			return "detector:" + d
		}
		var ev degradedEvidence // stored before it had labels
		_ = json.Unmarshal(a.Evidence, &ev)
		return "detector:" + ev.Detector
	}
	if a.RotationID != "" {
		return "rotation:" + a.RotationID
	}
	return "key:" + a.KeyID
}

func muted(a Alert) bool { return a.Silenced != "" || a.Inhibited != "" }

// told says whether a firing alert makes its group due: when not muted, or when silenced but acted
// on by an auto or approve policy, since a silence mutes notifications and must not hide that a
// key is being revoked or rolled back, or waits for an approval.
func told(a Alert) bool {
	if a.State != Firing {
		return false
	}
	if !muted(a) {
		return true
	}
	return a.Inhibited == "" && a.Action != nil && (a.Action.Mode == "auto" || a.Action.Mode == "approve")
}

// groups builds the groups as of now. A group with a firing alert holds its firing and pending
// alerts and those resolved during this episode (since its earliest firing alert became active);
// a group with none firing holds only its resolved alerts (resolved within the last day), so that
// its resolution can be told. Pending-only groups are left out; alerts that never fired too.
func groups(next map[string]*stored) []Group {
	by := map[string][]Alert{}
	for _, a := range sortedAlerts(next) {
		if a.State == Resolved && a.FiredAt.IsZero() {
			continue
		}
		by[GroupKey(a.Alert)] = append(by[GroupKey(a.Alert)], a.Alert)
	}
	var out []Group
	for key, all := range by {
		var start time.Time
		for _, a := range all {
			if a.State == Firing && (start.IsZero() || a.ActiveSince.Before(start)) {
				start = a.ActiveSince
			}
		}
		g := Group{Key: key, Resolved: start.IsZero()}
		for _, a := range all {
			switch {
			case start.IsZero() && a.State == Resolved,
				!start.IsZero() && (a.State != Resolved || !a.ResolvedAt.Before(start)):
				g.Alerts = append(g.Alerts, a)
			}
		}
		if len(g.Alerts) == 0 {
			continue
		}
		slices.SortStableFunc(g.Alerts, func(a, b Alert) int {
			if a.Severity != b.Severity {
				return int(b.Severity) - int(a.Severity)
			}
			return compareStrings(a.Fingerprint, b.Fingerprint)
		})
		clients := map[string]bool{}
		for _, a := range g.Alerts {
			if a.ClientID != "" {
				clients[a.ClientID] = true
			}
			for _, t := range []time.Time{a.ActiveSince, a.FiredAt, a.ResolvedAt} {
				if t.After(g.UpdatedAt) {
					g.UpdatedAt = t
				}
			}
		}
		if len(clients) == 1 {
			for c := range clients {
				g.ClientID = c
			}
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b Group) int { return compareStrings(a.Key, b.Key) })
	return out
}

// contentHash is what makes a group's notification change: its alerts' identity, state,
// severity, muting and action status; not their evidence numbers.
func contentHash(g Group) string {
	type item struct {
		Fingerprint, State, Severity string
		FiredAt                      time.Time
		Silenced, Inhibited          bool
		ActionMode, ActionStatus     string
	}
	items := make([]item, 0, len(g.Alerts))
	for _, a := range g.Alerts {
		it := item{a.Fingerprint, string(a.State), a.Severity.String(), a.FiredAt, a.Silenced != "", a.Inhibited != "", "", ""}
		if a.Action != nil {
			it.ActionMode, it.ActionStatus = a.Action.Mode, a.Action.Status
		}
		items = append(items, it)
	}
	raw, _ := json.Marshal(items)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:16])
}

// severityOf is what routes match: the highest severity among the group's firing alerts, or among
// all of them when none fires.
func severityOf(g Group) finding.Severity {
	var firing, any finding.Severity
	for _, a := range g.Alerts {
		any = max(any, a.Severity)
		if a.State == Firing {
			firing = max(firing, a.Severity)
		}
	}
	if firing > 0 {
		return firing
	}
	return any
}

// route returns the channels a group goes to: the matching routes in order (the first match
// ends the search unless it says continue; label.Routes), else the default channel, else none.
// A route matches a group when it matches one of its alerts with the group's severity and client.
func route(s config.Slack, g Group) []string {
	out := s.Routing().Channels(groupSets(g)...)
	if len(out) == 0 && s.DefaultChannel != "" {
		out = append(out, s.DefaultChannel)
	}
	return out
}

// groupSets are the label sets routes match a group by: one per alert (its detector, key_id and
// rotation_id), each with the group's severity (severityOf) and client (its one client, or none).
func groupSets(g Group) []label.Set {
	sev := severityOf(g).String()
	sets := make([]label.Set, 0, len(g.Alerts))
	for _, a := range g.Alerts {
		l := LabelSet(a)
		l["severity"], l["client_id"] = sev, g.ClientID
		sets = append(sets, l)
	}
	return sets
}

// due says whether a group's channel is to be notified now, and whether as a reminder.
//   - not told before, or told it resolved: when something fires unmuted (or silenced but acted
//     on, see told), group_wait after the
//     earliest such alert fired;
//   - told and changed since: group_interval after the last notification;
//   - told and unchanged while something fires unmuted: a reminder, repeat_interval after it.
func (e *Evaluator) due(st *sentState, g Group, hash string, now time.Time) (send, reminder bool) {
	var since time.Time
	for _, a := range g.Alerts {
		if told(a) && (since.IsZero() || a.FiredAt.Before(since)) {
			since = a.FiredAt
		}
	}
	notifiable := !since.IsZero()
	if st == nil || st.resolved {
		return notifiable && !g.Resolved && !now.Before(since.Add(time.Duration(e.cfg.GroupWait))), false
	}
	if hash != st.hash {
		return !now.Before(st.at.Add(time.Duration(e.cfg.GroupInterval))), false
	}
	if notifiable && !now.Before(st.at.Add(time.Duration(e.cfg.RepeatInterval))) {
		return true, true
	}
	return false, false
}

// notify hands every due group to the Notifier, once per channel, and remembers what it told.
func (e *Evaluator) notify(ctx context.Context, next map[string]*stored, now time.Time) {
	for _, g := range groups(next) {
		channels := route(e.routes, g)
		for gc, st := range e.sent {
			if gc.group == g.Key && !st.resolved && !slices.Contains(channels, gc.channel) {
				channels = append(channels, gc.channel) // where it was told, it is told the rest
			}
		}
		if len(channels) == 0 {
			if !e.unrouted[g.Key] {
				e.unrouted[g.Key] = true
				e.log.Debug("no channel for alert group: no route matches and slack.default_channel is empty", "group", g.Key)
			}
			continue
		}
		hash := contentHash(g)
		for _, ch := range channels {
			gc := groupChannel{g.Key, ch}
			st := e.sent[gc]
			send, reminder := e.due(st, g, hash, now)
			if !send {
				continue
			}
			if err := e.notifier.Notify(ctx, Notification{Channel: ch, Group: g, Reminder: reminder}); err != nil {
				e.log.Warn("notifier did not take the notification; retrying next pass", "group", g.Key, "channel", ch, "err", err)
				continue
			}
			version := uint64(now.UnixMilli())
			if st != nil {
				version = max(version, st.version+1)
			}
			e.sent[gc] = &sentState{hash: hash, resolved: g.Resolved, at: now, version: version, dirty: true}
		}
	}
	if err := e.storeSent(ctx); err != nil {
		e.log.Warn("notification state not stored; retrying next pass", "err", err)
	}
	for gc, st := range e.sent {
		if st.resolved && !st.dirty && now.Sub(st.at) > recentlyResolved {
			delete(e.sent, gc) // its alerts are no longer loaded either
		}
	}
}

func (e *Evaluator) loadSent(ctx context.Context, now time.Time) error {
	rows, err := e.conn.Query(ctx, selectNotificationState, ms(now.Add(-recentlyResolved)))
	if err != nil {
		return fmt.Errorf("alerting: read notification state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var gc groupChannel
		var st sentState
		if err := rows.Scan(&gc.group, &gc.channel, &st.hash, &st.resolved, &st.at, &st.version); err != nil {
			return fmt.Errorf("alerting: read notification state: %w", err)
		}
		st.at = st.at.UTC()
		e.sent[gc] = &st
	}
	return rows.Err()
}

func (e *Evaluator) storeSent(ctx context.Context) error {
	var dirty []groupChannel
	for gc, st := range e.sent {
		if st.dirty {
			dirty = append(dirty, gc)
		}
	}
	if len(dirty) == 0 {
		return nil
	}
	err := schema.Retry(ctx, time.Minute, func(ctx context.Context) error {
		b, err := e.conn.PrepareBatch(ctx, insertNotificationState)
		if err != nil {
			return err
		}
		defer b.Abort()
		for _, gc := range dirty {
			st := e.sent[gc]
			if err := b.Append(gc.group, gc.channel, st.hash, st.resolved, st.at, st.version); err != nil {
				return err
			}
		}
		return b.Send()
	})
	if err != nil {
		return fmt.Errorf("alerting: store notification state of %d groups: %w", len(dirty), err)
	}
	for _, gc := range dirty {
		e.sent[gc].dirty = false
	}
	return nil
}
