package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
)

// What a caller controls, as an attacker would write it: a mention of everyone, a link whose
// label asks for a click, a user mention and mrkdwn formatting.
const (
	evilUA     = "<!channel> <https://evil.example|Approve the revoke>"
	evilClient = "*bold* <@U999>"
)

// evilMarkup are what must never reach Slack from a value: each would notify or disguise a link.
var evilMarkup = []string{"<!channel>", "<https://evil", "<@U999>", "<!here>", "<!everyone>"}

// injectionGroup is a group whose alerts carry caller-controlled text in every place a value is
// shown: identity fields, summaries, evidence of each known kind, an unknown kind (a leak report's
// URL), and an action awaiting approval.
func injectionGroup(resolved bool) alerting.Group {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	lingering := alerting.Alert{
		Fingerprint: "fp_ling", Detector: "lingering", KeyID: "kid_old", ClientID: evilClient, RotationID: "kid_old>kid_new",
		Severity: finding.Warning, Score: 40, State: alerting.Firing, ActiveSince: at, FiredAt: at, LastSeen: at,
		// A folded finding about callers without a client says how many in its summary.
		Summary: "12 callers without a client still on kid_old, e.g. " + evilUA + " and " + evilClient,
		// The fields as the lingering detector writes them: plain text, with the caller's values
		// as they came; the evidence keeps how many findings were folded into this one.
		Fields: []finding.Field{
			{Name: "Rotation", Value: "kid_old → kid_new (retired)"},
			{Name: "Caller", Value: "203.0.113.7 " + evilUA},
			{Name: "Callers without a client", Value: "12 (4 addresses, 3 user agents)"},
			{Name: "Requests on old key", Value: "10 (0 failed) since 2026-11-25 10:00 UTC"},
			{Name: "On new key", Value: "0% (0 requests)"},
			{Name: "Deadline", Value: "2026-12-01 00:00 UTC (<!here> left)"},
			{Name: "Top addresses", Value: "<!everyone> (3)"},
			{Name: "Top user agents", Value: evilUA + " (7), " + strings.Repeat("A", 60000) + " (1)"},
		},
		Evidence: json.RawMessage(`{"rotation_id": "kid_old>kid_new", "callers": 12, "folded_findings": 12}`),
		Action:   &alerting.ActionStatus{ID: "wh_1", Kind: "revoke", Mode: "approve", Status: "awaiting_approval", Detail: "asked by " + evilClient},
	}
	spike := alerting.Alert{
		Fingerprint: "fp_spike", Detector: "spike", KeyID: "kid_old", ClientID: evilClient, Severity: finding.Critical, Score: 12,
		State: alerting.Firing, ActiveSince: at, FiredAt: at, LastSeen: at, Summary: evilClient + " fails",
		Fields: []finding.Field{
			{Name: "Rotation", Value: "kid_old → kid_new, retired 2026-11-25 10:00 UTC"},
			{Name: "Failures by outcome", Value: "<!channel> 3"},
			{Name: "Top routes", Value: "/v1/<https://evil.example|Approve the revoke> (3)"},
		},
		Action: &alerting.ActionStatus{ID: "rv_1", Kind: "reactivate", Mode: "approve", Status: "awaiting_approval"},
	}
	report := alerting.Alert{
		Fingerprint: "fp_report", Detector: "leak_report", KeyID: "kid_old", Severity: finding.Critical, Score: 100,
		State: alerting.Firing, ActiveSince: at, FiredAt: at, LastSeen: at, Summary: "reported at <https://evil.example|the report>",
		Evidence: json.RawMessage(`{"url": "<https://evil.example|Approve the revoke>", "<!channel>": "x", "source": "*content*"}`),
	}
	leak := alerting.Alert{
		Fingerprint: "fp_leak", Detector: "leak", KeyID: "kid_old", Severity: finding.Critical, Score: 150,
		State: alerting.Firing, ActiveSince: at, FiredAt: at, LastSeen: at, Summary: "new networks", Silenced: "<!channel>",
		Fields: []finding.Field{
			{Name: "Key state", Value: "active"},
			{Name: "Signal <@U999> (+60)", Value: evilUA},
			{Name: "New networks", Value: "AS1 (<!channel> Approve) <@U999>: 0 requests\n<!here>"},
		},
	}
	// An alert stored before findings had display fields: shown from its evidence.
	stored := alerting.Alert{
		Fingerprint: "fp_stored", Detector: "leak", KeyID: "kid_old", Severity: finding.Critical, Score: 150,
		State: alerting.Firing, ActiveSince: at, FiredAt: at, LastSeen: at, Summary: "new networks",
		Evidence: json.RawMessage(`{"key_state": "active", "signals": [{"kind": "<@U999>", "score": 60, "reason": "<!channel> <https://evil.example|Approve the revoke>",
			"places": [{"network": "AS1", "as_org": "<!channel> Approve", "countries": ["<@U999>"]}]}], "<!here>": "*x*"}`),
	}
	g := alerting.Group{Key: "key:kid_old", ClientID: evilClient, Alerts: []alerting.Alert{lingering, spike, report, leak, stored}, Resolved: resolved, UpdatedAt: at}
	if resolved {
		for i := range g.Alerts {
			g.Alerts[i].State, g.Alerts[i].ResolvedAt = alerting.Resolved, at.Add(time.Hour)
		}
	}
	return g
}

// Acceptance test of issue #14 (7): values from events and findings reach Slack escaped, in the
// message, its fallback text, its confirmation dialogs and its thread replies.
func TestSlackTextsEscapeValues(t *testing.T) {
	conn := newDB(t)
	f := newFakeSlack(t)
	cfg := slackConfig(f, 0)
	ctx := context.Background()
	s, _ := start(t, conn, cfg)
	if err := s.Notify(ctx, alerting.Notification{Channel: "C1", Group: injectionGroup(false)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the post", func() bool { return outboxDepth(t, conn) == 0 })
	check(t, f, "firing", 1)
	if err := s.Notify(ctx, alerting.Notification{Channel: "C1", Group: injectionGroup(false), Reminder: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reminder", func() bool { return outboxDepth(t, conn) == 0 })
	if err := s.Notify(ctx, alerting.Notification{Channel: "C1", Group: injectionGroup(true)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the resolution", func() bool { return outboxDepth(t, conn) == 0 })

	// What the fake kept: the message as last updated (resolved) and the two replies; what it
	// first showed (firing, with its buttons and dialogs) was checked before.
	check(t, f, "resolved", 3)
}

// postedText is every string of a posted message: its text and each string in its blocks,
// decoded (the blocks travel as JSON, where "<" may be written \u003c).
func postedText(t *testing.T, m fakeMessage) string {
	t.Helper()
	parts := []string{m.Text}
	if m.Blocks != "" {
		var v any
		if err := json.Unmarshal([]byte(m.Blocks), &v); err != nil {
			t.Fatalf("blocks %s: %v", m.Blocks, err)
		}
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case string:
				parts = append(parts, x)
			case []any:
				for _, e := range x {
					walk(e)
				}
			case map[string]any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		walk(v)
	}
	return strings.Join(parts, "\n")
}

// check asserts that no message in C1 carries mrkdwn from a value, nor a value uncut, and that the
// values are there, escaped.
func check(t *testing.T, f *fakeSlack, phase string, n int) {
	t.Helper()
	_, msgs := f.snapshot()
	if len(msgs["C1"]) != n {
		t.Fatalf("%s: want %d messages in C1, got %d", phase, n, len(msgs["C1"]))
	}
	for i, m := range msgs["C1"] {
		text := postedText(t, m)
		for _, bad := range evilMarkup {
			if strings.Contains(text, bad) {
				t.Errorf("%s: message %d contains %q:\n%s", phase, i, bad, text)
			}
		}
		if strings.Contains(text, strings.Repeat("A", 201)) {
			t.Errorf("%s: message %d carries the 60 KB user agent uncut", phase, i)
		}
	}
	text := postedText(t, msgs["C1"][0])
	for _, want := range []string{
		"&lt;!channel&gt; &lt;https://evil.example|Approve the revoke&gt;", // the user agent, shown as text
		"*bold* &lt;@U999&gt;", // the client id, its stars inside inline code
		"12 callers without a client",
		"*Callers without a client*\n12 (4 addresses, 3 user agents)",
		"*Findings folded in*\n12",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("%s: message lacks %q:\n%s", phase, want, text)
		}
	}
}

func TestMrkdwnValue(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"acme-billing", "acme-billing"},
		{"Tom & Jerry", "Tom &amp; Jerry"},
		{"<!channel>", "&lt;!channel&gt;"},
		{"&lt;!here&gt;", "&amp;lt;!here&amp;gt;"},
		{"<!channel> <@U999>", "&lt;!channel&gt; &lt;@U999&gt;"},
		{evilUA, "`&lt;!channel&gt; &lt;https://evil.example|Approve the revoke&gt;`"}, // a URL: text, in code
		{evilClient, "`*bold* &lt;@U999&gt;`"},
		{"kid_x", "`kid_x`"},
		{"~struck~", "`~struck~`"},
		{"a`b``c", "`aˋbˋˋc`"},
		{":white_check_mark: approved", "`:white_check_mark: approved`"},
		{"https://evil.example/x", "`https://evil.example/x`"},
		{"line\nbreak\r\n> quote", "line break  &gt; quote"},
		{"\x1b[31mred", " [31mred"},
		{"ab\u202Edc\u200B", "abdc"}, // bidi override and zero-width space dropped
		{"  *x*  ", "`*x*`"},
	} {
		if got := mrkdwnValue(c.in); got != c.want {
			t.Errorf("mrkdwnValue(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := mrkdwnValue(strings.Repeat("é", 60000))
	if n := utf8.RuneCountInString(long); n != maxValue || !strings.HasSuffix(long, "…") {
		t.Errorf("a 60000-character value is shown as %d characters (%q…)", n, long[:10])
	}
	// Cut before escaping: an entity is never cut in two.
	if got := mrkdwnValue(strings.Repeat("<", 300)); !strings.HasSuffix(got, "&lt;…") {
		t.Errorf("cut value ends %q", got[len(got)-12:])
	}
	if got := mrkdwnCode("kidx"); got != "`kidx`" {
		t.Errorf("mrkdwnCode(kidx) = %q", got)
	}
}

// A display field's value is escaped word by word: a word with formatting characters is code, the
// punctuation around it is not, and no markup survives.
func TestFieldValue(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"120 (3 failed)", "120 (3 failed)"},
		{"kid_old → kid_new (retired)", "`kid_old` → `kid_new` (retired)"},
		{"kid_old → kid_new, retired", "`kid_old` → `kid_new`, retired"},
		{"revoked_key 40, invalid_key 3", "`revoked_key` 40, `invalid_key` 3"},
		{"(:smile:)", "(`:smile:`)"},
		{evilUA, "&lt;!channel&gt; `&lt;https://evil.example|Approve` the revoke&gt;"},
		{evilClient, "`*bold*` &lt;@U999&gt;"},
		{"*a b*", "`*a` `b*`"},
		{"line\n> quote", "line\n&gt; quote"},
		{"AS64666 (Cloud) BR: 36 requests\nBR: 36 requests", "AS64666 (Cloud) BR: 36 requests\nBR: 36 requests"},
		{"a`b", "`aˋb`"},
	} {
		if got := fieldValue(c.in); got != c.want {
			t.Errorf("fieldValue(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := fieldValue(strings.Repeat("A", 60000) + " " + strings.Repeat("b ", 1000))
	if strings.Contains(long, strings.Repeat("A", maxValue)) || utf8.RuneCountInString(long) > maxProse {
		t.Errorf("a long value is shown as %d characters", utf8.RuneCountInString(long))
	}
	if lines := strings.Count(fieldValue(strings.Repeat("x\n", 400)), "\n"); lines >= maxFieldLines {
		t.Errorf("a value of 400 lines is shown as %d lines, want at most %d", lines+1, maxFieldLines)
	}
}

func TestMrkdwnLink(t *testing.T) {
	for _, c := range []struct{ url, label, want string }{
		{"https://runbooks.example/keywatch", "Runbook", "<https://runbooks.example/keywatch|Runbook>"},
		{"https://runbooks.example/k?a=1&b=2", "Run<book>", "<https://runbooks.example/k?a=1&amp;b=2|Run&lt;book&gt;>"},
		{"https://runbooks.example/a|b>c", "Runbook", "<https://runbooks.example/a%7Cb%3Ec|Runbook>"},
		{"javascript:alert(1)", "Runbook", "Runbook javascript:alert(1)"},
		{"<!channel>", "Runbook", "Runbook &lt;!channel&gt;"},
	} {
		if got := mrkdwnLink(c.url, c.label); got != c.want {
			t.Errorf("mrkdwnLink(%q, %q) = %q, want %q", c.url, c.label, got, c.want)
		}
	}
}

func TestFieldLabelAndMention(t *testing.T) {
	for in, want := range map[string]string{"new_network": "new network", "*<!channel>*": "channel", "": "field", "`": "field"} {
		if got := fieldLabel(in); got != want {
			t.Errorf("fieldLabel(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"U123ABC": "<@U123ABC>", "U1> <!channel": "U1&gt; &lt;!channel", "<!here>": "&lt;!here&gt;"} {
		if got := mention(in); got != want {
			t.Errorf("mention(%q) = %q, want %q", in, got, want)
		}
	}
}

// The text shown through response_url after a click holds the Approver's answer (key ids, the
// approver's Slack name) escaped, and mentions only the clicking user.
func TestInteractionResponseEscaped(t *testing.T) {
	shown := make(chan string, 1)
	responses := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		shown <- string(b)
	}))
	defer responses.Close()
	approver := &fakeApprover{answer: "Revoke of kid_x approved by " + evilUA + ": sending"}
	h := NewInteractions(newDB(t), interactionsConfig(), approver, &fakeRefuser{}, nil, quietLog())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, signedRequest(click("U_OK", ApproveActionID, responses.URL), time.Now(), testSecret))
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var body string
	select {
	case body = <-shown:
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not updated through response_url")
	}
	var msg struct {
		Blocks []json.RawMessage `json:"blocks"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil {
		t.Fatal(err)
	}
	text := postedText(t, fakeMessage{Blocks: string(mustJSON(t, msg.Blocks))})
	for _, bad := range evilMarkup {
		if strings.Contains(text, bad) {
			t.Errorf("the response contains %q:\n%s", bad, text)
		}
	}
	if !strings.Contains(text, "Clicked by <@U_OK>: `Revoke of kid_x approved by &lt;!channel&gt;") {
		t.Errorf("the response does not show the escaped answer:\n%s", text)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
