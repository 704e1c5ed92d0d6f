package notify

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// Slack's Block Kit limits.
const (
	maxBlocks        = 50
	maxFields        = 10
	maxFieldChars    = 2000
	maxSectionChars  = 3000
	maxHeaderChars   = 150
	maxFallbackChars = 3000
	// maxSectionsPerAlert: an alert's fields beyond 10 go into one more section, then are cut.
	maxSectionsPerAlert = 2
)

// ApproveActionID is the action_id of the "Revoke now" button; its value is the action's id.
const ApproveActionID = "keywatch_approve"

// RollbackActionID is the action_id of the "Roll back" button of a failure-spike alert whose
// rollback (extend_grace or reactivate) awaits approval; its value is the action's id.
const RollbackActionID = "keywatch_rollback"

// grafanaActionID is the action_id of the "Grafana" link button: Slack opens the link and posts
// the click to the interactions endpoint, which only acknowledges it.
const grafanaActionID = "keywatch_grafana"

// approves reports whether a click on the button actionID approves the action named by its value.
func approves(actionID string) bool {
	return actionID == ApproveActionID || actionID == RollbackActionID
}

// message is a rendered notification: the Block Kit blocks, the plain-text fallback, and the short
// thread reply a resolution or a reminder posts. It is what the outbox stores as payload.
type message struct {
	Text   string       `json:"text"`
	Blocks slack.Blocks `json:"blocks"`
	// Resolved and Reminder are the replies' texts.
	Resolved string `json:"resolved_reply,omitempty"`
	Reminder string `json:"reminder_reply,omitempty"`
}

// renderer turns notifications into messages.
type renderer struct {
	grafanaURL, runbookURL string
}

func newRenderer(cfg config.Slack) renderer {
	return renderer{grafanaURL: cfg.GrafanaURL, runbookURL: cfg.RunbookURL}
}

var severityEmoji = map[finding.Severity]string{
	finding.Critical: ":red_circle:", finding.Warning: ":large_orange_circle:", finding.Info: ":large_blue_circle:",
}

// render builds the message of one notification. It depends only on n (no clock), so the same
// notification always renders the same bytes and its content hash is stable.
func (r renderer) render(n alerting.Notification) message {
	g := n.Group
	sev := groupSeverity(g)
	// The header is plain_text, the fallback text and the replies mrkdwn: each has its own title.
	title := groupTitle(g, func(s string) string { return plainValue(s, maxHeaderChars) })
	mdTitle := groupTitle(g, mrkdwnValue)
	var header, mdHeader string
	if g.Resolved {
		header, mdHeader = ":white_check_mark: RESOLVED — "+title, ":white_check_mark: RESOLVED — "+mdTitle
	} else {
		prefix := fmt.Sprintf("%s %s — ", severityEmoji[sev], strings.ToUpper(sev.String()))
		header, mdHeader = prefix+title, prefix+mdTitle
	}
	blocks := []slack.Block{slack.NewHeaderBlock(plain(truncate(header, maxHeaderChars)))}
	fallback := []string{mdHeader}

	alerts := slices.Clone(g.Alerts)
	// Most urgent first, then stable by fingerprint.
	sort.SliceStable(alerts, func(i, j int) bool {
		if alerts[i].Severity != alerts[j].Severity {
			return alerts[i].Severity > alerts[j].Severity
		}
		return alerts[i].Fingerprint < alerts[j].Fingerprint
	})
	// The last block is kept for the links and, when cut, the "not shown" note.
	shown := 0
	for _, a := range alerts {
		ab := r.alertBlocks(a)
		if len(blocks)+len(ab)+2 > maxBlocks {
			break
		}
		blocks = append(blocks, ab...)
		fallback = append(fallback, fmt.Sprintf("%s %s: %s", a.Severity, mrkdwnValue(a.Detector), mrkdwnProse(a.Summary)))
		shown++
	}
	if shown < len(alerts) {
		blocks = append(blocks, slack.NewContextBlock("", markdown(fmt.Sprintf("%d more alerts not shown", len(alerts)-shown))))
	}
	if r.runbookURL != "" {
		blocks = append(blocks, slack.NewContextBlock("", markdown(mrkdwnLink(r.runbookURL, "Runbook"))))
	}
	msg := message{Text: truncate(strings.Join(fallback, "\n"), maxFallbackChars), Blocks: slack.Blocks{BlockSet: blocks}}
	msg.Resolved = ":white_check_mark: Resolved: " + mdTitle
	msg.Reminder = ":bell: Still firing: " + mdTitle
	return msg
}

// alertBlocks renders one alert: its summary with the identity and evidence fields, a context line
// (state, muting, action status) and the buttons.
func (r renderer) alertBlocks(a alerting.Alert) []slack.Block {
	text := fmt.Sprintf("*%s* · %s · score %s\n%s", mrkdwnValue(a.Detector), a.Severity, strconv.FormatFloat(math.Round(a.Score*10)/10, 'f', -1, 64), mrkdwnProse(a.Summary))
	fields := alertFields(a)
	var blocks []slack.Block
	for i := 0; i < maxSectionsPerAlert && (i == 0 || len(fields) > 0); i++ {
		chunk := fields[:min(maxFields, len(fields))]
		fields = fields[len(chunk):]
		var objs []*slack.TextBlockObject
		for _, f := range chunk {
			objs = append(objs, markdown(truncate(fmt.Sprintf("*%s*\n%s", f.label, f.value), maxFieldChars)))
		}
		var t *slack.TextBlockObject
		if i == 0 {
			t = markdown(truncate(text, maxSectionChars))
		}
		blocks = append(blocks, slack.NewSectionBlock(t, objs, nil))
	}

	var ctx []string
	switch a.State {
	case alerting.Resolved:
		ctx = append(ctx, ":white_check_mark: resolved "+stamp(a.ResolvedAt))
	case alerting.Firing:
		ctx = append(ctx, "firing since "+stamp(a.FiredAt))
	default:
		ctx = append(ctx, mrkdwnValue(string(a.State)))
	}
	if a.Silenced != "" {
		ctx = append(ctx, ":mute: muted by silence "+mrkdwnValue(a.Silenced))
	}
	if a.Inhibited != "" {
		ctx = append(ctx, ":mute: muted: inhibited by "+mrkdwnValue(a.Inhibited))
	}
	if s := actionText(a.Action); s != "" {
		ctx = append(ctx, s)
	}
	blocks = append(blocks, slack.NewContextBlock("", markdown(truncate(strings.Join(ctx, " · "), maxSectionChars))))

	var buttons []slack.BlockElement
	if link := r.grafanaLink(a); link != "" {
		buttons = append(buttons, slack.NewButtonBlockElement(grafanaActionID, a.Fingerprint, plain("Grafana")).WithURL(link))
	}
	// Approval buttons only while the alert fires: a resolved incident is not acted on.
	awaiting := a.State == alerting.Firing && a.Action != nil && a.Action.Status == "awaiting_approval" && a.Action.ID != ""
	if awaiting && isRollback(a.Action.Kind) {
		what := "extends the grace period of"
		if a.Action.Kind == "reactivate" {
			what = "reactivates"
		}
		// A dialog's title takes 100 characters, its text 300.
		confirm := slack.NewConfirmationBlockObject(plain("Roll back "+plainValue(a.KeyID, 60)+"?"),
			markdown(truncate(fmt.Sprintf("This %s key %s now (%s). %s", what, mrkdwnN(a.KeyID, 60), mrkdwnValue(a.Action.Kind), mrkdwnN(a.Summary, 150)), 300)),
			plain("Roll back"), plain("Cancel"))
		buttons = append(buttons, slack.NewButtonBlockElement(RollbackActionID, a.Action.ID, plain("Roll back")).
			WithStyle(slack.StylePrimary).WithConfirm(confirm))
	} else if awaiting {
		confirm := slack.NewConfirmationBlockObject(plain("Revoke "+plainValue(a.KeyID, 60)+"?"),
			markdown(truncate(fmt.Sprintf("This sends a revoke of key %s now. %s", mrkdwnN(a.KeyID, 60), mrkdwnN(a.Summary, 150)), 300)),
			plain("Revoke"), plain("Cancel"))
		buttons = append(buttons, slack.NewButtonBlockElement(ApproveActionID, a.Action.ID, plain("Revoke now")).
			WithStyle(slack.StyleDanger).WithConfirm(confirm))
	}
	if len(buttons) > 0 {
		blocks = append(blocks, slack.NewActionBlock("", buttons...))
	}
	return blocks
}

// isRollback reports whether an action kind is a rollback (action.KindExtendGrace, KindReactivate).
func isRollback(kind string) bool { return kind == "extend_grace" || kind == "reactivate" }

// actionText says what the Actor did or offers.
func actionText(s *alerting.ActionStatus) string {
	if s == nil || s.Status == "" {
		return ""
	}
	kind := mrkdwnValue(s.Kind)
	if kind == "" {
		kind = "action"
	}
	var t string
	switch s.Status {
	case "awaiting_approval":
		t = kind + ": awaiting approval"
	case "sent":
		t = kind + " sent"
	case "dry_run":
		t = "dry-run: would " + kind
	default:
		t = kind + ": " + mrkdwnValue(strings.ReplaceAll(s.Status, "_", " "))
	}
	if s.Detail != "" {
		t += " (" + mrkdwnProse(s.Detail) + ")"
	}
	return ":zap: " + t
}

// grafanaLink is the dashboard deep link of an alert: its key and client, from an hour before the
// episode began to an hour after it resolved (or now).
func (r renderer) grafanaLink(a alerting.Alert) string {
	if r.grafanaURL == "" {
		return ""
	}
	u, err := url.Parse(r.grafanaURL)
	if err != nil {
		return ""
	}
	q := u.Query()
	if a.KeyID != "" {
		q.Set("var-key", a.KeyID)
	}
	if a.ClientID != "" {
		q.Set("var-client", a.ClientID)
	}
	if !a.ActiveSince.IsZero() {
		q.Set("from", strconv.FormatInt(a.ActiveSince.Add(-time.Hour).UnixMilli(), 10))
	}
	if a.ResolvedAt.IsZero() {
		q.Set("to", "now")
	} else {
		q.Set("to", strconv.FormatInt(a.ResolvedAt.Add(time.Hour).UnixMilli(), 10))
	}
	u.RawQuery = q.Encode()
	if link := u.String(); len(link) <= maxURL {
		return link
	}
	return "" // Slack refuses a message with a longer button URL: no button
}

type field struct{ label, value string }

// alertFields are an alert's identity fields, then what its detector put in the evidence.
func alertFields(a alerting.Alert) []field {
	var fs []field
	add := func(label, value string) {
		if value != "" {
			fs = append(fs, field{label, value})
		}
	}
	add("Key", mrkdwnCode(a.KeyID))
	add("Client", mrkdwnValue(a.ClientID))
	add("Rotation", mrkdwnValue(a.RotationID))
	// Not the alert's last_seen: it moves with every detector run, and a message must change
	// only when what it says changes.
	add("Active since", stamp(a.ActiveSince))
	if len(a.Evidence) == 0 || string(a.Evidence) == "null" {
		return fs
	}
	var ev []field
	var err error
	switch a.Detector {
	case "lingering":
		ev, err = lingeringFields(a.Evidence)
	case "spike":
		ev, err = spikeFields(a.Evidence)
	case "leak":
		ev, err = leakFields(a.Evidence)
	case "hygiene":
		ev, err = hygieneFields(a.Evidence)
	default:
		err = errUnknown
	}
	if err != nil {
		ev = genericFields(a.Evidence) // shows folded_findings among the rest
	} else if n := foldedFindings(a.Evidence); n > 0 {
		ev = append([]field{{"Findings folded in", strconv.Itoa(n)}}, ev...)
	}
	return append(fs, ev...)
}

// foldedFindings is how many findings the engine folded into this one (detect's evidence field
// folded_findings, read by name whatever the detector); 0 when it was not folded.
func foldedFindings(raw json.RawMessage) int {
	var f struct {
		N int `json:"folded_findings"`
	}
	_ = json.Unmarshal(raw, &f)
	return f.N
}

var errUnknown = fmt.Errorf("unknown evidence")

func lingeringFields(raw json.RawMessage) ([]field, error) {
	var e detect.LingeringEvidence
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	c := e.Caller
	caller := mrkdwnValue(c.ClientID)
	if caller == "" {
		caller = strings.TrimSpace(mrkdwnValue(c.IP) + " " + mrkdwnValue(c.UserAgent))
	}
	if caller == "" && e.Callers > 0 {
		// The finding about a rotation's callers without a client sums several (detect).
		caller = "callers without a client"
	}
	fs := []field{
		{"Rotation", fmt.Sprintf("%s → %s (%s)", mrkdwnCode(e.OldKeyID), mrkdwnCode(e.NewKeyID), mrkdwnValue(e.Step))},
		{"Caller", caller},
	}
	if e.Callers > 0 {
		fs = append(fs, field{"Callers without a client", fmt.Sprintf("%d (%d addresses, %d user agents)", e.Callers, e.Addresses, e.UserAgents)})
	}
	fs = append(fs,
		field{"Requests on old key", fmt.Sprintf("%d (%d failed) since %s", c.Requests, c.Failures, stamp(e.Since))},
		field{"First / last seen", stamp(c.FirstSeen) + " / " + stamp(c.LastSeen)},
		field{"On new key", fmt.Sprintf("%.0f%% (%d requests)", 100*c.NewKeyShare, c.NewKeyRequests)},
	)
	if e.Deadline != nil {
		fs = append(fs, field{"Deadline", stamp(*e.Deadline) + " (" + mrkdwnValue(e.TimeLeft) + " left)"})
	}
	if len(c.TopIPs) > 0 {
		fs = append(fs, field{"Top addresses", countsText(c.TopIPs)})
	}
	if len(c.TopUserAgents) > 0 {
		fs = append(fs, field{"Top user agents", countsText(c.TopUserAgents)})
	}
	return fs, nil
}

func countsText(cs []detect.Count) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s (%d)", mrkdwnValue(c.Value), c.Requests))
	}
	return strings.Join(parts, ", ")
}

func spikeFields(raw json.RawMessage) ([]field, error) {
	var e detect.SpikeEvidence
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	fs := []field{
		{"Rotation", fmt.Sprintf("%s → %s, %s %s", mrkdwnCode(e.OldKeyID), mrkdwnCode(e.NewKeyID), mrkdwnValue(string(e.Step)), stamp(e.StepAt))},
		{"Failures, short window", windowText(e.Short)},
		{"Failures, long window", windowText(e.Long)},
		{"Baseline", fmt.Sprintf("%.2f%% (%s)", 100*e.Baseline.Rate, mrkdwnValue(e.Baseline.Source))},
	}
	if len(e.FailuresByOutcome) > 0 {
		fs = append(fs, field{"Failures by outcome", mapText(e.FailuresByOutcome)})
	}
	if len(e.TopRoutes) > 0 {
		var parts []string
		for _, r := range e.TopRoutes {
			parts = append(parts, fmt.Sprintf("%s (%d)", mrkdwnValue(r.Name), r.Failures))
		}
		fs = append(fs, field{"Top routes", strings.Join(parts, ", ")})
	}
	if e.Keyless.Failures > 0 {
		fs = append(fs, field{"Keyless failures", strconv.FormatUint(e.Keyless.Failures, 10)})
	}
	return fs, nil
}

func windowText(w detect.SpikeWindow) string {
	return fmt.Sprintf("%d of %d (%.2f%%, z %.1f)", w.Failures, w.Requests, 100*w.Rate, w.Z)
}

func mapText(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		name := mrkdwnValue(k)
		if name == "" {
			name = "(none)"
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, m[k]))
	}
	return strings.Join(parts, ", ")
}

func leakFields(raw json.RawMessage) ([]field, error) {
	var e detect.LeakEvidence
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	window := fmt.Sprintf("%d requests", e.WindowRequests)
	if !e.WindowStart.IsZero() {
		window = fmt.Sprintf("%s – %s, %s", stamp(e.WindowStart), stamp(e.WindowEnd), window)
	}
	fs := []field{{"Window", window}}
	if e.KeyState != "" {
		fs = append(fs, field{"Key state", mrkdwnValue(e.KeyState)})
	}
	var networks []string
	for _, s := range e.Signals {
		fs = append(fs, field{fmt.Sprintf("Signal %s (+%.0f)", fieldLabel(s.Kind), s.Score), mrkdwnProse(s.Reason)})
		for _, p := range s.Places {
			name := mrkdwnValue(p.Network)
			if name == "" {
				name = mrkdwnValue(p.Country)
			}
			if p.ASOrg != "" {
				name += " (" + mrkdwnValue(p.ASOrg) + ")"
			}
			if len(p.Countries) > 0 {
				cs := make([]string, len(p.Countries))
				for i, c := range p.Countries {
					cs[i] = mrkdwnValue(c)
				}
				name += " " + strings.Join(cs, "/")
			}
			networks = append(networks, fmt.Sprintf("%s: %d requests, %s – %s", name, p.Requests, stamp(p.FirstSeen), stamp(p.LastSeen)))
		}
	}
	if len(networks) > 0 {
		fs = append(fs, field{"New networks", strings.Join(networks, "\n")})
	}
	return fs, nil
}

func hygieneFields(raw json.RawMessage) ([]field, error) {
	var e detect.HygieneEvidence
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	age := fmt.Sprintf("%.0f days (limit %.0f)", e.AgeDays, e.LimitDays)
	if e.ExpiresAt != nil {
		age = fmt.Sprintf("%.0f days", e.AgeDays)
	}
	fs := []field{
		{"Problem", mrkdwnValue(strings.ReplaceAll(e.Kind, "_", " "))},
		{"Key state", mrkdwnValue(e.State)},
		{"Age", age},
		{"Requests", strconv.FormatUint(e.Requests, 10)},
	}
	if e.ExpiresAt != nil {
		left := fmt.Sprintf("%.1f days left", e.DaysLeft)
		if e.DaysLeft < 0 {
			left = fmt.Sprintf("expired %.1f days ago", -e.DaysLeft)
		}
		fs = append(fs, field{"Expires", fmt.Sprintf("%s (%s; reported within %.0f days)", stamp(*e.ExpiresAt), left, e.LimitDays)})
	}
	if !e.LastUsed.IsZero() {
		fs = append(fs, field{"Last used", stamp(e.LastUsed)})
	} else {
		fs = append(fs, field{"Last used", "never"})
	}
	if e.UnusedDays > 0 {
		fs = append(fs, field{"Unused for", fmt.Sprintf("%.0f days", e.UnusedDays)})
	}
	return fs, nil
}

// genericFields shows unknown evidence (a leak report's, a new detector's) as key: value, in key
// order. Its keys and values are data: labels keep only plain characters, values are escaped; a
// URL (a leak report's) is shown as text, not as a link.
func genericFields(raw json.RawMessage) []field {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return []field{{"Evidence", mrkdwnValue(string(raw))}}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var fs []field
	for _, k := range keys {
		v := string(m[k])
		var s string
		if json.Unmarshal(m[k], &s) == nil {
			v = s
		}
		fs = append(fs, field{fieldLabel(k), mrkdwnValue(v)})
	}
	return fs
}

// groupSeverity is the highest severity among the group's alerts.
func groupSeverity(g alerting.Group) finding.Severity {
	sev := finding.Info
	for _, a := range g.Alerts {
		sev = max(sev, a.Severity)
	}
	return sev
}

// groupTitle names the detectors and what they are about: "leak on kid_x", each name written by
// value (plainValue for plain_text, mrkdwnValue for mrkdwn).
func groupTitle(g alerting.Group, value func(string) string) string {
	var dets []string
	for _, a := range g.Alerts {
		if !slices.Contains(dets, a.Detector) {
			dets = append(dets, a.Detector)
		}
	}
	slices.Sort(dets)
	what := value(g.Key)
	if kind, id, ok := strings.Cut(g.Key, ":"); ok {
		switch kind {
		case "rotation":
			what = "rotation " + value(id)
		case "key", "detector":
			what = value(id)
		}
	}
	if len(dets) == 0 {
		return what
	}
	for i, d := range dets {
		dets[i] = value(d)
	}
	return strings.Join(dets, ", ") + " on " + what
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}
