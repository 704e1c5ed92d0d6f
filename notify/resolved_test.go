package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/alerting"
)

// Once the spike alert has resolved (the client recovered on its own), its message is re-rendered
// as RESOLVED without the "Roll back" button of the awaiting action: a click would reactivate or
// extend a retired key for an incident that is over.
func TestResolvedAlertOffersNoButtons(t *testing.T) {
	a := &alerting.ActionStatus{ID: "rv_1", Kind: "reactivate", Mode: "approve", Status: "awaiting_approval"}
	g := spikeGroup(a)
	g.Resolved = true
	g.Alerts[0].State = alerting.Resolved
	g.Alerts[0].ResolvedAt = g.Alerts[0].FiredAt.Add(time.Hour)
	_, blocks := blocksOf(t, testRenderer(), alerting.Notification{Channel: "C1", Group: g})
	for _, b := range blocks {
		if b["type"] != "actions" {
			continue
		}
		for _, e := range b["elements"].([]any) {
			if m := e.(map[string]any); strings.HasPrefix(m["action_id"].(string), RollbackActionID) {
				t.Errorf("resolved alert still carries button %s=%s", m["action_id"], m["value"])
			}
		}
	}
}
