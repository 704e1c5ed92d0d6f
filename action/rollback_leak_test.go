package action

import (
	"net/http"
	"testing"
	"time"

	"github.com/keywatch/keywatch/rotation"
)

// A rollback queued before its key is considered leaked is refused at its next attempt, never
// delivered after keywatch's own emergency revoke of that key: the receiver must not be told to
// revoke, then to reactivate.
func TestRollbackRetryAfterLeakIsRefused(t *testing.T) {
	retryLater := func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	e := newEnv(t, nil, retryLater) // revoke.default_mode auto, min_score 50
	e.r.rollback = rollbackCfg()
	e.r.rollback.DefaultMode, e.r.rollback.Policies = "auto", nil
	e.r.rollback.DefaultAction = KindReactivate
	e.r.rollback.CriticalClients = []string{"acme-*"}
	e.rotated("kid_old", "kid_new", "acme-billing", t0.Add(-time.Hour))

	st := e.consider(spikeAlert("kid_old", "kid_new", "acme-billing", rotation.StepRevoked))
	if st == nil || st.Status != stateQueued || st.Kind != KindReactivate {
		t.Fatalf("Consider: %+v", st)
	}
	e.clk.Add(time.Second)
	e.sendDue() // 503, Retry-After 60 s

	// The key now leaks: an open leak alert, and the revoke policy revokes it at once.
	e.clk.Add(time.Second)
	e.leak("kid_old", true, 0)
	leakAlert := alert("leak", "kid_old", 120)
	rv := e.consider(leakAlert)
	if rv == nil || rv.Kind != KindRevoke || rv.Status != stateQueued {
		t.Fatalf("revoke of the leaked key: %+v", rv)
	}
	e.clk.Add(time.Second)
	e.sendDue() // the revoke goes out
	e.clk.Add(2 * time.Minute)
	e.sendDue() // the rollback's retry

	var order []string
	for _, d := range e.rv.deliveries() {
		order = append(order, body(t, d)["action"].(string))
	}
	if rec := e.load(st.ID); rec.State != stateRefused || rec.Guardrail != GuardLeaked {
		t.Errorf("the reactivate of leaked key kid_old: state %s guardrail %q (%s), want refused by leaked; receiver saw, in order: %v",
			rec.State, rec.Guardrail, rec.Detail, order)
	}
}
