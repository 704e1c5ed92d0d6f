package notify

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// blocksOf renders n and returns its blocks as generic JSON.
func blocksOf(t *testing.T, r renderer, n alerting.Notification) (message, []map[string]any) {
	t.Helper()
	msg := r.render(n)
	b, err := json.Marshal(msg.Blocks)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []map[string]any
	if err := json.Unmarshal(b, &blocks); err != nil {
		t.Fatal(err)
	}
	return msg, blocks
}

func testRenderer() renderer {
	cfg := config.Default().Slack
	cfg.GrafanaURL = "https://grafana.example/d/keywatch?orgId=1"
	cfg.RunbookURL = "https://runbooks.example/keywatch"
	return newRenderer(cfg)
}

func TestRenderLeakAwaitingApproval(t *testing.T) {
	n := alerting.Notification{Channel: "C1", Group: leakGroup("kid_x", false)}
	n.Group.Alerts[0].Action = &alerting.ActionStatus{ID: "wh_123", Kind: "revoke", Mode: "approve", Status: "awaiting_approval"}
	msg, blocks := blocksOf(t, testRenderer(), n)

	if blocks[0]["type"] != "header" || blocks[0]["text"].(map[string]any)["text"] != ":red_circle: CRITICAL — leak on kid_x" {
		t.Fatalf("header: %v", blocks[0])
	}
	if !strings.Contains(msg.Text, "CRITICAL — leak on `kid_x`") || !strings.Contains(msg.Text, "used from 3 new networks") {
		t.Fatalf("fallback text: %q", msg.Text)
	}
	all, _ := json.Marshal(blocks)
	js := string(all)
	for _, want := range []string{
		`"text":"*Key*\n` + "`kid_x`" + `"`, `"text":"*Client*\nacme"`,
		`Signal new network (+60)`, `revoke: awaiting approval`,
		`"action_id":"keywatch_approve"`, `"value":"wh_123"`, `"style":"danger"`, `"confirm":`,
		`\u003chttps://runbooks.example/keywatch|Runbook\u003e`,
	} {
		if !strings.Contains(js, want) {
			t.Errorf("blocks lack %s:\n%s", want, js)
		}
	}
	// The Grafana button links the key and client over the episode.
	var link string
	for _, b := range blocks {
		if b["type"] != "actions" {
			continue
		}
		for _, e := range b["elements"].([]any) {
			if e.(map[string]any)["action_id"] == "keywatch_grafana" {
				link = e.(map[string]any)["url"].(string)
			}
		}
	}
	u, err := url.Parse(link)
	if err != nil || u.Host != "grafana.example" {
		t.Fatalf("grafana link %q: %v", link, err)
	}
	q := u.Query()
	from := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC).UnixMilli()
	if q.Get("var-key") != "kid_x" || q.Get("var-client") != "acme" || q.Get("from") != fmt.Sprint(from) || q.Get("to") != "now" || q.Get("orgId") != "1" {
		t.Fatalf("grafana link query %v", q)
	}
}

func TestRenderStates(t *testing.T) {
	muted := leakGroup("kid_m", false)
	muted.Alerts[0].Silenced = "sil_1"
	muted.Alerts[0].Severity = finding.Warning
	dry := leakGroup("kid_d", false)
	dry.Alerts[0].Action = &alerting.ActionStatus{ID: "wh_9", Kind: "revoke", Mode: "dry-run", Status: "dry_run"}
	sent := leakGroup("kid_s", false)
	sent.Alerts[0].Action = &alerting.ActionStatus{ID: "wh_8", Kind: "revoke", Mode: "auto", Status: "sent", Detail: "200 OK"}
	cases := []struct {
		name  string
		group alerting.Group
		want  []string
		not   []string
	}{
		{"resolved", leakGroup("kid_x", true), []string{`:white_check_mark: RESOLVED — leak on kid_x`, `resolved 2026-11-25 13:00 UTC`}, []string{"keywatch_approve"}},
		{"muted", muted, []string{`:large_orange_circle: WARNING — leak on kid_m`, ":mute: muted by silence `sil_1`"}, nil},
		{"dry-run", dry, []string{`dry-run: would revoke`}, []string{"keywatch_approve"}},
		{"sent", sent, []string{`revoke sent (200 OK)`}, []string{"keywatch_approve"}},
	}
	for _, c := range cases {
		_, blocks := blocksOf(t, testRenderer(), alerting.Notification{Channel: "C1", Group: c.group})
		b, _ := json.Marshal(blocks)
		for _, w := range c.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: lacks %q: %s", c.name, w, b)
			}
		}
		for _, w := range c.not {
			if strings.Contains(string(b), w) {
				t.Errorf("%s: has %q: %s", c.name, w, b)
			}
		}
	}
}

// TestRenderFields: an alert shows its display fields as its detector wrote them, each value
// escaped; an alert stored before findings had fields (a leak report's, or one of a known detector)
// shows its evidence as key: value.
func TestRenderFields(t *testing.T) {
	type fs = []finding.Field
	cases := []struct {
		detector string
		fields   fs
		evidence json.RawMessage
		want     []string
	}{
		{"lingering", fs{{Name: "Rotation", Value: "kid_old → kid_new (started)"}, {Name: "Caller", Value: "acme"},
			{Name: "Requests on old key", Value: "120 (3 failed) since 2026-11-25 10:00 UTC"}, {Name: "On new key", Value: "25% (0 requests)"},
			{Name: "Deadline", Value: "2026-12-01 00:00 UTC (48h0m0s left)"}, {Name: "Top addresses", Value: "203.0.113.7 (100)"}}, nil,
			[]string{"*Deadline*\n2026-12-01 00:00 UTC (48h0m0s left)", "*Caller*\nacme", "120 (3 failed)", "203.0.113.7 (100)", "25%",
				"*Rotation*\n`kid_old` → `kid_new` (started)"}},
		{"spike", fs{{Name: "Rotation", Value: "kid_old → kid_new, retired"}, {Name: "Failures, short window", Value: "40 of 100 (40.00%, z 12.0)"},
			{Name: "Failures by outcome", Value: "revoked_key 40"}, {Name: "Top routes", Value: "/v1/prices (30)"}}, nil,
			[]string{"40 of 100 (40.00%, z 12.0)", "`revoked_key` 40", "/v1/prices (30)", "*Failures, short window*", "`kid_new`, retired"}},
		{"hygiene", fs{{Name: "Problem", Value: "policy age"}, {Name: "Key state", Value: "active"}, {Name: "Age", Value: "400 days (limit 365)"},
			{Name: "Requests", Value: "9"}, {Name: "Last used", Value: "never"}}, nil,
			[]string{"*Problem*\npolicy age", "400 days (limit 365)", "*Last used*\nnever"}},
		{"hygiene", fs{{Name: "Problem", Value: "expiring"}, {Name: "Key state", Value: "active"}, {Name: "Age", Value: "20 days"},
			{Name: "Expires", Value: "2026-12-01 00:00 UTC (4.5 days left; reported within 14 days)"}}, nil,
			[]string{"*Problem*\nexpiring", "*Age*\n20 days", "*Expires*\n2026-12-01 00:00 UTC (4.5 days left; reported within 14 days)"}},
		{"leak_report", nil, json.RawMessage(`{"url": "https://github.com/o/r/blob/x", "source": "content", "count": 3}`),
			[]string{"*url*\n`https://github.com/o/r/blob/x`", "*source*\ncontent", "*count*\n3"}},
		{"spike", nil, json.RawMessage(`{"old_key_id": "kid_old", "step": "retired", "folded_findings": 2}`),
			[]string{"*old key id*\n`kid_old`", "*step*\nretired", "*folded findings*\n2"}},
	}
	for _, c := range cases {
		g := leakGroup("kid_x", false)
		g.Alerts[0].Detector, g.Alerts[0].Fields, g.Alerts[0].Evidence = c.detector, c.fields, c.evidence
		_, blocks := blocksOf(t, testRenderer(), alerting.Notification{Channel: "C1", Group: g})
		b, _ := json.Marshal(blocks)
		var text strings.Builder
		for _, blk := range blocks {
			for _, f := range asList(blk["fields"]) {
				text.WriteString(f.(map[string]any)["text"].(string) + "\n")
			}
		}
		for _, w := range c.want {
			if !strings.Contains(text.String(), w) {
				t.Errorf("%s: fields lack %q:\n%s", c.detector, w, b)
			}
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func TestRenderLimits(t *testing.T) {
	huge := map[string]string{}
	for i := range 30 {
		huge[fmt.Sprintf("field_%02d", i)] = strings.Repeat("x", 5000)
	}
	evidence, _ := json.Marshal(huge)
	var fields []finding.Field
	for i := range 30 {
		fields = append(fields, finding.Field{Name: fmt.Sprintf("Field %02d", i), Value: strings.Repeat("x ", 2500)})
	}
	g := alerting.Group{Key: "rotation:r1"}
	for i := range 40 {
		a := leakGroup(fmt.Sprintf("kid_%02d", i), false).Alerts[0]
		a.Detector, a.Evidence, a.Fields = "something_new", evidence, nil
		if i%2 == 1 { // display fields, as a detector writes them
			a.Fields = fields
		}
		a.Summary = strings.Repeat("s", 4000)
		g.Alerts = append(g.Alerts, a)
	}
	msg, blocks := blocksOf(t, testRenderer(), alerting.Notification{Channel: "C1", Group: g})
	if len(blocks) > maxBlocks {
		t.Fatalf("%d blocks, Slack allows %d", len(blocks), maxBlocks)
	}
	b, _ := json.Marshal(blocks)
	if !strings.Contains(string(b), "more alerts not shown") {
		t.Errorf("a cut message must say so")
	}
	if utf8.RuneCountInString(msg.Text) > maxFallbackChars {
		t.Errorf("fallback text of %d characters", utf8.RuneCountInString(msg.Text))
	}
	for _, blk := range blocks {
		fields := asList(blk["fields"])
		if len(fields) > maxFields {
			t.Fatalf("a section with %d fields", len(fields))
		}
		for _, f := range fields {
			if n := utf8.RuneCountInString(f.(map[string]any)["text"].(string)); n > maxFieldChars {
				t.Fatalf("a field of %d characters", n)
			}
		}
		if txt, ok := blk["text"].(map[string]any); ok {
			if n := utf8.RuneCountInString(txt["text"].(string)); n > maxSectionChars {
				t.Fatalf("a text of %d characters", n)
			}
		}
	}
	// The same notification renders the same bytes (the content hash is stable).
	a, _ := json.Marshal(testRenderer().render(alerting.Notification{Channel: "C1", Group: g}))
	c, _ := json.Marshal(testRenderer().render(alerting.Notification{Channel: "C1", Group: g}))
	if string(a) != string(c) {
		t.Fatal("rendering is not deterministic")
	}
}
