package action

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
	"github.com/keywatch/keywatch/webhook"
	"github.com/keywatch/keywatch/webhook/webhooktest"
)

// slackUser is a Slack approver, as notify passes one.
func slackUser(id, name string) Person { return Person{Source: "slack", ID: id, Name: name} }

// alice is a console user without a display name: her login is shown.
var alice = Person{Source: "console", ID: "alice"}

// A person refuses an action awaiting approval once: stored refused (declined), audited with the
// actor, counted and published as a refused outcome; a second refusal or approval does nothing.
func TestRefuse(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.DefaultMode = "approve" })
	rcv := webhooktest.NewReceiver(t)
	o, err := webhook.NewOutbox(e.conn, []config.Webhook{rcv.Endpoint("ops")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.r.WithPublisher(o)
	st := e.consider(alert("leak", "kid_a", 100))
	if st.Status != stateAwaiting {
		t.Fatalf("Consider: %+v", st)
	}
	e.clk.Add(time.Second)
	text, err := e.r.Refuse(e.ctx, st.ID, alice, "  a false positive: the key is a test key \n")
	if err != nil || text != "Revoke of kid_a refused by alice: a false positive: the key is a test key" {
		t.Fatalf("Refuse: %q %v", text, err)
	}
	rec := e.load(st.ID)
	if rec.State != stateRefused || rec.Guardrail != GuardDeclined || rec.Detail != "refused by alice: a false positive: the key is a test key" || rec.ApprovedBy != "" {
		t.Errorf("refused action %s/%s %q approved by %q", rec.State, rec.Guardrail, rec.Detail, rec.ApprovedBy)
	}
	if a := e.audit(st.ID); !slices.Equal(a, []string{"awaiting_approval//0", "refused/declined/0"}) {
		t.Errorf("audit %v", a)
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE action_id = ? AND event = 'refused' AND actor = 'console:alice'
AND detail = 'refused by alice: a false positive: the key is a test key'`, st.ID); n != 1 {
		t.Errorf("%d refusals by console:alice, want 1", n)
	}
	if v := value(e.m.revokes.WithLabelValues("refused")); v != 1 {
		t.Errorf("keywatch_revokes_total{result=refused} %g, want 1", v)
	}

	// Refused again, or approved after: said so, audited as skipped, nothing done.
	e.clk.Add(time.Second)
	text, err = e.r.Refuse(e.ctx, st.ID, Person{Source: "console", ID: "bob"}, "")
	if err != nil || text != "Revoke of kid_a is refused" {
		t.Errorf("second Refuse: %q %v", text, err)
	}
	e.clk.Add(time.Second)
	if text, err = e.r.Approve(e.ctx, st.ID, slackUser("U1", "carol")); err != nil || text != "Revoke of kid_a is refused" {
		t.Errorf("Approve after the refusal: %q %v", text, err)
	}
	want := []string{"awaiting_approval//0", "refused/declined/0", "skipped/already_decided/0", "skipped/already_decided/0"}
	if a := e.audit(st.ID); !slices.Equal(a, want) {
		t.Errorf("audit %v, want %v", a, want)
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE action_id = ? AND actor = 'console:bob' AND event = 'skipped'`, st.ID); n != 1 {
		t.Errorf("%d skipped refusals by console:bob, want 1", n)
	}
	if rec := e.load(st.ID); rec.Version != 2 || rec.Detail != "refused by alice: a false positive: the key is a test key" {
		t.Errorf("after a second refusal: version %d, %q", rec.Version, rec.Detail)
	}
	if v := value(e.m.revokes.WithLabelValues("refused")); v != 1 {
		t.Errorf("keywatch_revokes_total{result=refused} %g after a second refusal, want 1", v)
	}
	e.clk.Add(time.Second)
	e.sendDue()
	if got := e.rv.deliveries(); len(got) != 0 {
		t.Errorf("a refused revoke was sent: %+v", got)
	}

	// An unknown action: audited, an error.
	if _, err := e.r.Refuse(e.ctx, "rv_nonexistent", alice, "no"); err == nil {
		t.Error("Refuse of an unknown action: no error")
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE action_id = 'rv_nonexistent' AND event = 'refused' AND guardrail = 'unknown_action'
AND actor = 'console:alice' AND detail LIKE 'refusal of unknown action%'`); n != 1 {
		t.Errorf("%d refusals of the unknown action, want 1", n)
	}

	// Without a reason; a long one is cut to 500 bytes of valid UTF-8; a shown name is preferred.
	st2 := e.consider(alert("leak", "kid_b", 100))
	e.clk.Add(time.Second)
	if text, err := e.r.Refuse(e.ctx, st2.ID, Person{Source: "console", ID: "dave", Name: "Dave D."}, " "); err != nil || text != "Revoke of kid_b refused by Dave D." {
		t.Errorf("Refuse without a reason: %q %v", text, err)
	}
	st3 := e.consider(alert("leak", "kid_c", 100))
	e.clk.Add(time.Second)
	long := "x" + strings.Repeat("é", 300) // 601 bytes: byte 500 is inside an é
	if _, err := e.r.Refuse(e.ctx, st3.ID, alice, long); err != nil {
		t.Fatal(err)
	}
	reason, _ := strings.CutPrefix(e.load(st3.ID).Detail, "refused by alice: ")
	if !utf8.ValidString(reason) || len(reason) != 499 || !strings.HasPrefix(long, reason) {
		t.Errorf("a long reason kept as %d bytes (valid %v)", len(reason), utf8.ValidString(reason))
	}

	// A rollback awaiting approval is refused the same way, and counted as a rollback.
	e.r.rollback = rollbackCfg()
	e.rotated("kid_old", "kid_new", "acme-billing", t0.Add(2*time.Hour))
	rb := e.consider(e.stored(spikeAlert("kid_old", "kid_new", "acme-billing", rotation.StepRevoked)))
	if rb.Status != stateAwaiting {
		t.Fatalf("rollback: %+v", rb)
	}
	e.clk.Add(time.Second)
	text, err = e.r.Refuse(e.ctx, rb.ID, alice, "we revoke anyway")
	if err != nil || text != "Rollback (extend_grace) of kid_old refused by alice: we revoke anyway" {
		t.Errorf("Refuse of a rollback: %q %v", text, err)
	}
	if rec := e.load(rb.ID); rec.State != stateRefused || rec.Guardrail != GuardDeclined {
		t.Errorf("refused rollback %s/%s", rec.State, rec.Guardrail)
	}
	if v := value(e.m.rollbacks.WithLabelValues("refused")); v != 1 {
		t.Errorf("keywatch_rollbacks_total{result=refused} %g, want 1", v)
	}

	// Each refusal is published once as a refused outcome, naming the guardrail.
	wantOut := []string{
		"action.revoke refused kid_a declined", "action.revoke refused kid_b declined", "action.revoke refused kid_c declined",
		"action.rollback refused kid_old declined",
	}
	deadline := time.Now().Add(time.Minute)
	for len(rcv.Delivered()) < len(wantOut) && time.Now().Before(deadline) {
		if err := o.SendDue(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, d := range rcv.Deliveries() {
		var data OutcomeData
		if err := json.Unmarshal(d.Data, &data); err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Type+" "+data.Outcome+" "+data.KeyID+" "+data.Guardrail)
	}
	slices.Sort(got)
	if !slices.Equal(got, wantOut) {
		t.Errorf("outcome webhooks\n%q\nwant\n%q", got, wantOut)
	}
}

// An approval from the console is the same approval under the same guardrails, audited with its
// actor; a Slack one keeps its actor slack:<user id>.
func TestApproveFromConsole(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.DefaultMode, c.MaxPerHour = "approve", 2 })
	st := e.consider(alert("leak", "kid_a", 100))
	e.clk.Add(time.Second)
	text, err := e.r.Approve(e.ctx, st.ID, alice)
	if err != nil || text != "Revoke of kid_a approved by alice: sending" {
		t.Fatalf("Approve: %q %v", text, err)
	}
	if rec := e.load(st.ID); rec.State != stateApproved || rec.ApprovedBy != "alice" {
		t.Errorf("approved action %s by %q", rec.State, rec.ApprovedBy)
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE action_id = ? AND event = 'approved' AND actor = 'console:alice'`, st.ID); n != 1 {
		t.Errorf("%d approvals by console:alice, want 1", n)
	}
	e.clk.Add(time.Second)
	if text, _ := e.r.Approve(e.ctx, st.ID, Person{Source: "console", ID: "bob"}); text != "Revoke of kid_a was already approved by alice (approved)" {
		t.Errorf("second Approve: %q", text)
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE action_id = ? AND event = 'skipped' AND guardrail = 'already_decided' AND actor = 'console:bob'`, st.ID); n != 1 {
		t.Errorf("%d skipped approvals by console:bob, want 1", n)
	}
	e.clk.Add(time.Second)
	e.sendDue()
	if got := e.rv.deliveries(); len(got) != 1 || !strings.Contains(got[0].Body, `"mode":"approve"`) {
		t.Errorf("deliveries %+v, want one with mode approve", got)
	}

	st2 := e.consider(alert("leak", "kid_b", 100))
	e.clk.Add(time.Second)
	if text, err := e.r.Approve(e.ctx, st2.ID, slackUser("U1", "carol")); err != nil || text != "Revoke of kid_b approved by carol: sending" {
		t.Fatalf("Slack Approve: %q %v", text, err)
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE action_id = ? AND event = 'approved' AND actor = 'slack:U1'`, st2.ID); n != 1 {
		t.Errorf("%d approvals by slack:U1, want 1", n)
	}
	if rec := e.load(st2.ID); rec.ApprovedBy != "carol" {
		t.Errorf("approved by %q, want carol", rec.ApprovedBy)
	}
	// The hourly cap (2) is used up: a console approval is refused for now, as a click is.
	e.sendDue()
	st3 := e.consider(alert("leak", "kid_c", 100))
	e.clk.Add(time.Second)
	if text, _ := e.r.Approve(e.ctx, st3.ID, alice); !strings.Contains(text, "max_per_hour") {
		t.Errorf("console Approve over the cap: %q", text)
	}
	if rec := e.load(st3.ID); rec.State != stateAwaiting {
		t.Errorf("over the cap: %s, want still awaiting_approval", rec.State)
	}
}

// ReadPending lists exactly the actions awaiting approval, oldest first.
func TestReadPending(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.DefaultMode = "approve" })
	if got, err := ReadPending(e.ctx, e.conn); err != nil || len(got) != 0 {
		t.Fatalf("ReadPending of none: %+v %v", got, err)
	}
	a := alert("leak", "kid_a", 100)
	stA := e.consider(a)
	e.clk.Add(time.Second)
	e.consider(alert("leak", "kid_low", 10)) // refused: below revoke.min_score
	stB := e.consider(alert("leak", "kid_b", 100))
	e.clk.Add(time.Second)
	stC := e.consider(alert("leak", "kid_c", 100))
	e.clk.Add(time.Second)
	if _, err := e.r.Approve(e.ctx, stB.ID, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Refuse(e.ctx, stC.ID, alice, "no"); err != nil {
		t.Fatal(err)
	}
	e.r.rollback = rollbackCfg()
	e.rotated("kid_old", "kid_new", "acme-billing", t0.Add(2*time.Hour))
	rb := e.consider(e.stored(spikeAlert("kid_old", "kid_new", "acme-billing", rotation.StepRevoked)))

	got, err := ReadPending(e.ctx, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range got {
		ids = append(ids, p.ID)
	}
	if !slices.Equal(ids, []string{stA.ID, rb.ID}) {
		t.Fatalf("pending %v, want kid_a's %s and the rollback %s", ids, stA.ID, rb.ID)
	}
	p := got[0]
	want := Pending{
		ID: stA.ID, Kind: KindRevoke, KeyID: "kid_a", ClientID: "client_kid_a", AlertID: a.ID(), Reason: "leak alert (score 100): test",
		Mode: "approve", Detail: "waiting for an approver", RequestedAt: t0,
	}
	if p != want {
		t.Errorf("pending\n%+v\nwant\n%+v", p, want)
	}
	if r := got[1]; r.Kind != KindExtendGrace || r.KeyID != "kid_old" || r.AlertID == "" || r.RequestedAt.Location() != time.UTC {
		t.Errorf("pending rollback %+v", r)
	}
}

// ReadAuditOf selects by key and by alert episode, newest first, at most Limit.
func TestReadAuditOf(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.DefaultMode = "approve" })
	a, b := alert("leak", "kid_a", 100), alert("leak", "kid_b", 100)
	stA := e.consider(a)
	e.clk.Add(time.Second)
	stB := e.consider(b)
	e.clk.Add(time.Second)
	if _, err := e.r.Approve(e.ctx, stA.ID, alice); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Second)
	e.sendDue() // kid_a: decided and sent at one time
	e.clk.Add(time.Second)
	if _, err := e.r.Refuse(e.ctx, stB.ID, alice, "no"); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Second)
	// A key keywatch never saw: a manual revoke is refused, audited without an alert episode.
	if _, err := e.r.Manual(e.ctx, "kid_a", "by hand", "cli:bob"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Manual of an unseen key: %v, want ErrUnknownKey", err)
	}

	events := func(aq AuditQuery) []string {
		t.Helper()
		got, err := ReadAuditOf(e.ctx, e.conn, aq)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for i, x := range got {
			if i > 0 && x.At.After(got[i-1].At) {
				t.Errorf("%+v: entry %d at %s after entry %d at %s: want newest first", aq, i, x.At, i-1, got[i-1].At)
			}
			if x.At.Location() != time.UTC {
				t.Errorf("%+v: entry %d at %s, want UTC", aq, i, x.At)
			}
			out = append(out, x.KeyID+" "+x.Event)
		}
		return out
	}
	wantA := []string{"kid_a refused", "kid_a sent", "kid_a decided", "kid_a approved", "kid_a awaiting_approval"}
	if got := events(AuditQuery{KeyID: "kid_a"}); !slices.Equal(got, wantA) {
		t.Errorf("audit of kid_a %q, want %q", got, wantA)
	}
	wantAlertA := wantA[1:] // the manual request belongs to no alert episode
	if got := events(AuditQuery{AlertID: a.ID()}); !slices.Equal(got, wantAlertA) {
		t.Errorf("audit of alert %s %q, want %q", a.ID(), got, wantAlertA)
	}
	if got := events(AuditQuery{AlertID: b.ID()}); !slices.Equal(got, []string{"kid_b refused", "kid_b awaiting_approval"}) {
		t.Errorf("audit of alert %s %q", b.ID(), got)
	}
	if got := events(AuditQuery{KeyID: "kid_a", AlertID: b.ID()}); len(got) != 0 {
		t.Errorf("audit of kid_a in kid_b's alert %q, want none", got)
	}
	if got := events(AuditQuery{KeyID: "kid_a", Limit: 2}); !slices.Equal(got, wantA[:2]) {
		t.Errorf("audit of kid_a, limit 2: %q, want %q", got, wantA[:2])
	}
	all := events(AuditQuery{Limit: 5000})
	if len(all) != len(wantA)+2 || all[0] != "kid_a refused" {
		t.Errorf("whole audit %q", all)
	}
}
