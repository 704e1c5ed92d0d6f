package notify

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
)

func spikeGroup(action *alerting.ActionStatus) alerting.Group {
	fired := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	return alerting.Group{Key: "rotation:kid_old>kid_new", ClientID: "acme", Alerts: []alerting.Alert{{
		Fingerprint: "fp_spike", Detector: "spike", KeyID: "kid_old", ClientID: "acme", RotationID: "kid_old>kid_new",
		Severity: finding.Critical, Score: 14, Summary: "acme: 80% of 50 requests failed after kid_old was revoked",
		State: alerting.Firing, ActiveSince: fired, FiredAt: fired, LastSeen: fired, Action: action,
	}}}
}

// buttons returns action_id=value of every button of a rendered notification.
func buttons(t *testing.T, a *alerting.ActionStatus) []string {
	t.Helper()
	_, blocks := blocksOf(t, testRenderer(), alerting.Notification{Channel: "C1", Group: spikeGroup(a)})
	var out []string
	for _, b := range blocks {
		if b["type"] != "actions" {
			continue
		}
		for _, e := range b["elements"].([]any) {
			m := e.(map[string]any)
			out = append(out, m["action_id"].(string)+"="+m["value"].(string))
		}
	}
	return out
}

// A spike alert whose rollback awaits approval has a "Roll back" button (not "Revoke now"); once
// decided, or for a revoke, it has none or the revoke one.
func TestRenderRollbackButton(t *testing.T) {
	for _, c := range []struct {
		name   string
		action *alerting.ActionStatus
		want   string
		text   string
	}{
		{"extend_grace awaiting", &alerting.ActionStatus{ID: "rv_1", Kind: "extend_grace", Mode: "approve", Status: "awaiting_approval"},
			"keywatch_grafana=fp_spike keywatch_rollback=rv_1", "`extend_grace`: awaiting approval"},
		{"reactivate awaiting", &alerting.ActionStatus{ID: "rv_2", Kind: "reactivate", Mode: "auto", Status: "awaiting_approval", Detail: "not_critical: acme is not in rollback.critical_clients"},
			"keywatch_grafana=fp_spike keywatch_rollback=rv_2", "reactivate: awaiting approval (`not_critical: acme is not in rollback.critical_clients`)"},
		{"sent", &alerting.ActionStatus{ID: "rv_1", Kind: "extend_grace", Mode: "approve", Status: "sent", Detail: "sent: the receiver answered 200"},
			"keywatch_grafana=fp_spike", "`extend_grace` sent"},
		{"refused for a leak", &alerting.ActionStatus{ID: "rv_3", Kind: "extend_grace", Mode: "auto", Status: "skipped", Detail: "leaked: kid_old has a firing leak alert"},
			"keywatch_grafana=fp_spike", "`extend_grace`: skipped (`leaked: kid_old has a firing leak alert`)"},
		{"revoke awaiting", &alerting.ActionStatus{ID: "rv_4", Kind: "revoke", Mode: "approve", Status: "awaiting_approval"},
			"keywatch_grafana=fp_spike keywatch_approve=rv_4", "revoke: awaiting approval"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := strings.Join(buttons(t, c.action), " "); got != c.want {
				t.Errorf("buttons %q, want %q", got, c.want)
			}
			_, blocks := blocksOf(t, testRenderer(), alerting.Notification{Channel: "C1", Group: spikeGroup(c.action)})
			js, _ := json.Marshal(blocks)
			if !strings.Contains(string(js), c.text) {
				t.Errorf("blocks lack %q:\n%s", c.text, js)
			}
			if strings.Contains(c.want, "keywatch_rollback") && !strings.Contains(string(js), `"text":"Roll back"`) {
				t.Errorf("no Roll back label:\n%s", js)
			}
		})
	}
}

// A "Roll back" click passes the same signature, replay and allow-list checks as "Revoke now",
// then goes to the Approver; its button is replaced by who approved.
func TestInteractionsRollbackClick(t *testing.T) {
	approver, refuser := &fakeApprover{}, &fakeRefuser{}
	h := NewInteractions(newDB(t), interactionsConfig(), approver, refuser, nil, quietLog())
	now := time.Now()
	h.now = func() time.Time { return now }
	valid := click("U_OK", RollbackActionID, "")
	for _, c := range []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"valid click", signedRequest(valid, now, testSecret), http.StatusOK},
		{"replayed", signedRequest(valid, now, testSecret), http.StatusForbidden},
		{"forged", signedRequest(click("U_OK", RollbackActionID, ""), now, "wrong-secret"), http.StatusUnauthorized},
		{"stale", signedRequest(click("U_OK", RollbackActionID, ""), now.Add(-10*time.Minute), testSecret), http.StatusUnauthorized},
		{"not an approver", signedRequest(click("U_EVIL", RollbackActionID, ""), now, testSecret), http.StatusForbidden},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, c.req)
		if rec.Code != c.status {
			t.Errorf("%s: %d, want %d (%s)", c.name, rec.Code, c.status, rec.Body.String())
		}
	}
	approver.mu.Lock()
	defer approver.mu.Unlock()
	if len(approver.approved) != 1 || approver.approved[0] != "wh_1 by U_OK" || len(approver.rejected) != 1 || len(refuser.all()) != 3 {
		t.Fatalf("approved %v, audited %v, refused %v: want one approval, one audited refusal (not an approver), three refused before authentication",
			approver.approved, approver.rejected, refuser.all())
	}

	blocks := approvedBlocks([]slack.Block{slack.NewActionBlock("", slack.NewButtonBlockElement(RollbackActionID, "wh_1", plain("Roll back")))}, "wh_1", "approved by alice")
	js, _ := json.Marshal(blocks)
	if strings.Contains(string(js), RollbackActionID) || !strings.Contains(string(js), "approved by alice") {
		t.Errorf("approved blocks %s: want the button replaced by the approval", js)
	}
}
