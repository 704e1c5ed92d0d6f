package notify

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/slack-go/slack"

	"github.com/keywatch/keywatch/alerting"
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

// alertBlocks renders one alert: its summary with the identity and display fields, a context line
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
		ctx = append(ctx, ":white_check_mark: resolved "+finding.Stamp(a.ResolvedAt))
	case alerting.Firing:
		ctx = append(ctx, "firing since "+finding.Stamp(a.FiredAt))
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

// grafanaLink is the dashboard deep link of an alert (alerting.DashboardLink), or empty when
// Slack would refuse it as a button URL.
func (r renderer) grafanaLink(a alerting.Alert) string {
	if link := alerting.DashboardLink(r.grafanaURL, a); len(link) <= maxURL {
		return link
	}
	return "" // Slack refuses a message with a longer button URL: no button
}

type field struct{ label, value string }

// foldedField is the label of how many findings the engine folded into an alert's finding.
const foldedField = "Findings folded in"

// alertFields are an alert's identity fields, then its display fields (finding.Field) in the
// detector's order, each label cleaned (fieldLabel) and each value escaped (fieldValue). An alert
// stored before findings had display fields shows its evidence as key: value (genericFields).
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
	add("Active since", finding.Stamp(a.ActiveSince))
	if len(a.Fields) > 0 {
		if n := foldedFindings(a.Evidence); n > 0 && !slices.ContainsFunc(a.Fields, func(f finding.Field) bool { return f.Name == foldedField }) {
			add(foldedField, strconv.Itoa(n))
		}
		for _, f := range a.Fields {
			add(fieldLabel(f.Name), fieldValue(f.Value))
		}
		return fs
	}
	if len(a.Evidence) == 0 || string(a.Evidence) == "null" {
		return fs
	}
	return append(fs, genericFields(a.Evidence)...) // shows folded_findings among the rest
}

// foldedFindings is how many findings the engine folded into this one (the evidence field
// folded_findings, read by name whatever the detector); 0 when it was not folded.
func foldedFindings(raw json.RawMessage) int {
	var f struct {
		N int `json:"folded_findings"`
	}
	_ = json.Unmarshal(raw, &f)
	return f.N
}

// genericFields shows the evidence of an alert without display fields (one stored before findings
// had them) as key: value, in key order. Its keys and values are data: labels keep only plain characters, values are escaped; a
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
