package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/demo/simulate"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/digest"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/rotation"
)

// demoStory is when a story started and showed (zero: not yet), and what showed it.
type demoStory struct {
	started, shown time.Duration
	how            string
	alert, answer  bool // story 2: the lingering alert fired; the readiness answer was printed
}

// demo tells the stories: it announces each step the simulator reports, acts as the rotation
// pipeline and key-management system would (asks readiness, retires a key), and watches alerts
// and revoke decisions.
type demo struct {
	out        *progress
	started    time.Time
	notes      chan string
	quit       chan struct{}
	revokeMode string
	receiver   string
	quietFor   time.Duration

	conn      driver.Conn
	lingering *detect.Lingering
	lifecycle *kafka.Writer
	clean     simulate.Rotation
	lingerRot simulate.Rotation
	incidents simulate.Incidents
	wg        sync.WaitGroup

	mu      sync.Mutex
	stories map[int]*demoStory
	seen    map[string]bool // alert states and audit rows printed
}

func (d *demo) stamp() string { return fmt.Sprintf("[%5.1fs] ", time.Since(d.started).Seconds()) }

// note prints a line (or lines) above the progress line, from any goroutine.
func (d *demo) note(s string) {
	select {
	case d.notes <- s:
	case <-d.quit:
	}
}

// drain prints the notes still queued.
func (d *demo) drain() {
	for {
		select {
		case n := <-d.notes:
			d.out.note(n)
		default:
			return
		}
	}
}

func (d *demo) begin(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.stories[n]; s.started == 0 {
		s.started = time.Since(d.started)
	}
}

func (d *demo) shown(n int, how string) {
	d.mu.Lock()
	s := d.stories[n]
	first := s.shown == 0
	if first {
		s.shown, s.how = time.Since(d.started), how
	}
	d.mu.Unlock()
	if first {
		d.note(d.stamp() + fmt.Sprintf("✔ story %d shown: %s", n, how))
	}
}

func (d *demo) allShown() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.stories {
		if s.shown == 0 {
			return false
		}
	}
	return true
}

func banner(n int) string {
	return fmt.Sprintf("══ Story %d of 4: %s ══", n, demoStories[n])
}

// step announces a story step and starts what the demo does about it.
func (d *demo) step(ctx context.Context, s simulate.Step) {
	r := s.Rotation
	switch {
	case s.Story == simulate.StoryCleanRotation && s.Kind == simulate.StepRotationStarted:
		d.begin(s.Story)
		d.note(d.stamp() + banner(s.Story) + "\n" + indent(fmt.Sprintf(
			"%s starts rotating %s → %s (grace period until %s); all its callers move to the new key within %s.",
			r.ClientID, r.OldKeyID, r.NewKeyID, r.GraceUntil.Format("Jan 2 15:04"), r.MoveFor)))
	case s.Story == simulate.StoryCleanRotation && s.Kind == simulate.StepMoved:
		d.note(d.stamp() + fmt.Sprintf("every %s request now uses %s; readiness turns safe once nothing called %s for detect.lingering.quiet_for (%s in the demo, 1h by default).",
			r.ClientID, r.NewKeyID, r.OldKeyID, d.quietFor))
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.retireWhenSafe(ctx, r) }()
	case s.Story == simulate.StoryLingering && s.Kind == simulate.StepRotationStarted:
		d.begin(s.Story)
		d.note(d.stamp() + banner(s.Story) + "\n" + indent(fmt.Sprintf(
			"%s starts rotating %s → %s, grace period until %s (30 minutes). Its services move within %s, but its nightly export job (%s, %s) keeps using the old key.",
			r.ClientID, r.OldKeyID, r.NewKeyID, r.GraceUntil.Format("15:04:05"), r.MoveFor, r.StragglerIP, r.StragglerUA)))
	case s.Story == simulate.StoryLingering && s.Kind == simulate.StepMoved:
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.askLingering(ctx, r, s.At) }()
	case s.Story == simulate.StoryRevokedInUse:
		d.begin(s.Story)
		d.note(d.stamp() + banner(s.Story) + "\n" + indent(fmt.Sprintf(
			"%s (rotating to %s since 2 days) is revoked now by mistake, while %s still uses it: from here every request it makes fails (401 revoked_key).",
			r.OldKeyID, r.NewKeyID, r.ClientID)))
	case s.Story == simulate.StoryLeak:
		d.begin(s.Story)
		in := d.incidents
		what := fmt.Sprintf("revoke policy for leak alerts: dry-run (the decision is audited, nothing is sent; --revoke auto sends it to %s)", d.receiver)
		if d.revokeMode == "auto" {
			what = fmt.Sprintf("revoke policy for leak alerts: auto (the signed webhook goes to %s)", d.receiver)
		}
		d.note(d.stamp() + banner(s.Story) + "\n" + indent(fmt.Sprintf(
			"%s (%s) is used from 45.134.140.0/24 (AS64666 Unfamiliar Cloud, Brazil), where it never was in its history: %d addresses at once, then %g request/s. %s.",
			in.LeakedKeyID, in.LeakClientID, in.LeakBurst, in.LeakPerSecond, what)))
	}
}

// hours prints whole hours as "72h".
func hours(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

func indent(s string) string { return "          " + strings.ReplaceAll(s, "\n", "\n          ") }

// readinessText is what 'keywatch readiness' prints, indented.
func readinessText(rep detect.Readiness) string {
	var b bytes.Buffer
	detect.WriteReadiness(&b, rep)
	return indent("$ keywatch readiness " + rep.KeyID + "\n" + strings.TrimRight(b.String(), "\n"))
}

// retireWhenSafe is the rotation pipeline of story 1: it asks readiness every two seconds, and
// retires the old key once the answer is safe.
func (d *demo) retireWhenSafe(ctx context.Context, r simulate.Rotation) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	shownUnsafe := false
	for {
		rep, err := d.lingering.Readiness(ctx, time.Now(), r.OldKeyID)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			d.note(d.stamp() + fmt.Sprintf("readiness of %s: %v", r.OldKeyID, err))
		case rep.Safe:
			d.note(d.stamp() + "the rotation pipeline asks whether the old key can go:\n" + readinessText(rep))
			if d.waitNudge(ctx, r) {
				d.note(d.stamp() + "keywatch told the channel once: \"Safe to retire " + r.OldKeyID + "\" (rotation_nudges).")
			}
			at := time.Now().UTC()
			if err := d.lifecycle.WriteMessages(ctx, kafka.Message{Value: simulate.Retired(r, at)}); err != nil {
				d.note(d.stamp() + fmt.Sprintf("cannot retire %s: %v", r.OldKeyID, err))
				return
			}
			d.note(d.stamp() + (fmt.Sprintf("→ %s retired (key.retired on key-lifecycle); %s runs on %s alone.", r.OldKeyID, r.ClientID, r.NewKeyID)))
			d.shown(simulate.StoryCleanRotation, fmt.Sprintf("readiness SAFE for %s, then retired", r.OldKeyID))
			return
		case !shownUnsafe:
			shownUnsafe = true
			d.note(d.stamp() + "the rotation pipeline asks whether the old key can go (and asks again every 2 s):\n" + readinessText(rep))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// waitNudge waits up to 10 s for keywatch's "safe to retire" message of r (package digest), as a
// team would before retiring the key, and says whether it came.
func (d *demo) waitNudge(ctx context.Context, r simulate.Rotation) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if sent, err := digest.Nudged(ctx, d.conn, rotation.ID(r.OldKeyID, r.NewKeyID)); err == nil && sent {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// askLingering is story 2's readiness question, asked once the client's services moved: it waits
// for the lingering alert (at most 15 s), then prints the answer and who still calls the old key.
func (d *demo) askLingering(ctx context.Context, r simulate.Rotation, moved time.Time) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		fired := d.stories[simulate.StoryLingering].alert
		d.mu.Unlock()
		if fired {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	// A few seconds after the move, so the callers since then are the stragglers only.
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Until(moved.Add(5 * time.Second))):
	}
	rep, err := d.lingering.Readiness(ctx, time.Now(), r.OldKeyID)
	if err != nil {
		if ctx.Err() == nil {
			d.note(d.stamp() + fmt.Sprintf("readiness of %s: %v", r.OldKeyID, err))
		}
		return
	}
	text := d.stamp() + "the rotation pipeline asks whether acme's old key can go:\n" + readinessText(rep)
	if callers, err := ingest.TopCallers(ctx, d.conn, r.OldKeyID, moved, 3); err == nil {
		var lines []string
		for _, c := range callers {
			lines = append(lines, fmt.Sprintf("%s (%s): %d requests", c.Addr, c.UserAgent, c.Requests))
		}
		if len(lines) > 0 {
			text += "\n" + indent(fmt.Sprintf("calls with %s since its services moved (%s): %s",
				r.OldKeyID, moved.UTC().Format("15:04:05"), strings.Join(lines, "; ")))
		}
	}
	d.note(text)
	if !rep.Safe {
		d.lingeringPart(r.OldKeyID, false)
	}
}

// lingeringPart records one half of story 2, the lingering alert firing or readiness answering
// unsafe; the story shows once both came.
func (d *demo) lingeringPart(key string, alert bool) {
	d.mu.Lock()
	s := d.stories[simulate.StoryLingering]
	if alert {
		s.alert = true
	} else {
		s.answer = true
	}
	both := s.alert && s.answer
	d.mu.Unlock()
	if both {
		d.shown(simulate.StoryLingering, fmt.Sprintf("lingering alert firing and readiness UNSAFE for %s", key))
	}
}

// received reports a request the revoke receiver took.
func (d *demo) received(r receivedRevoke) {
	if !r.Verified {
		d.note(d.stamp() + fmt.Sprintf("⚠ revoke receiver refused a request: %s", r.Problem))
		return
	}
	d.note(d.stamp() + fmt.Sprintf("📨 revoke receiver: POST %s, signature verified (Standard Webhooks v1)\n%s", d.receiver,
		indent(fmt.Sprintf("webhook-id: %s\nwebhook-timestamp: %s\nwebhook-signature: %s\n%s", r.ID, r.Timestamp, r.Signature, r.Body))))
	if strings.Contains(r.Body, d.incidents.LeakedKeyID) {
		d.shown(simulate.StoryLeak, "leak alert firing; the signed revoke reached the receiver, verified")
	}
}

// watch prints alerts that changed state and new audit rows, and notes which stories they show.
func (d *demo) watch(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	if d.seen == nil {
		d.seen = map[string]bool{}
	}
	in := d.incidents
	if alerts, err := alerting.NewReader(d.conn).Current(qctx); err == nil {
		for _, a := range alerts {
			state, severity := string(a.State), a.Severity.String()
			// Hygiene alerts (old and unused keys) show as their one-line Slack messages only.
			if id := a.Fingerprint + state + severity; !d.seen[id] && a.Detector != "hygiene" {
				d.seen[id] = true
				subject := a.KeyID
				if a.ClientID != "" {
					subject += " (" + a.ClientID + ")"
				}
				d.out.note(d.stamp() + fmt.Sprintf("ALERT %s %s on %s: %s, score %.4g", severity, a.Detector, subject, state, a.Score))
			}
			if a.State != alerting.Firing {
				continue
			}
			switch {
			case a.Detector == "lingering" && a.KeyID == d.lingerRot.OldKeyID:
				d.lingeringPart(a.KeyID, true)
			case a.Detector == "spike" && a.ClientID == in.Revoked.ClientID:
				d.shown(simulate.StoryRevokedInUse, fmt.Sprintf("failure-spike alert firing for %s", a.ClientID))
			}
		}
	}
	if audit, err := action.ReadAudit(qctx, d.conn); err == nil {
		for _, e := range audit {
			if d.seen[e.ActionID+e.Event+e.Detail] {
				continue
			}
			d.seen[e.ActionID+e.Event+e.Detail] = true
			line := fmt.Sprintf("REVOKE %s %s", e.Event, e.KeyID)
			if e.Guardrail != "" {
				line += " guardrail " + e.Guardrail
			}
			if e.HTTPStatus != 0 {
				line += fmt.Sprintf(" HTTP %d", e.HTTPStatus)
			}
			d.out.note(d.stamp() + line + ": " + e.Detail + " (action_audit)")
			if e.KeyID == in.LeakedKeyID && e.Event == "dry_run" && strings.HasPrefix(e.Detail, "dry run") {
				d.shown(simulate.StoryLeak, "leak alert firing; audit: dry run, a revoke would be requested (nothing sent)")
			}
		}
	}
}

// summary prints when each story started and showed.
func (d *demo) summary(w io.Writer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintln(w, "\nStories (seconds since the demo started):")
	for n := simulate.StoryCleanRotation; n <= simulate.StoryLeak; n++ {
		s := d.stories[n]
		started, shown := "not started", "not shown"
		if s.started > 0 {
			started = fmt.Sprintf("started %5.1fs", s.started.Seconds())
		}
		if s.shown > 0 {
			shown = fmt.Sprintf("shown %5.1fs (%+.1fs): %s", s.shown.Seconds(), (s.shown - s.started).Seconds(), s.how)
		}
		fmt.Fprintf(w, "  %d. %-32s %s, %s\n", n, demoStories[n], started, shown)
	}
}
