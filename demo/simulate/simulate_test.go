package simulate

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// recorder is a Writer that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []kafka.Message
}

func (r *recorder) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	return nil
}

// TestScriptPlaysTheStories runs a compressed script: the steps come in order, each with its
// lifecycle event written first, the clean rotation's client ends up on its new key alone, the
// lingering rotation's client too but for its straggler, the revoked key fails, and the leak starts
// with a burst from distinct addresses of the new network.
func TestScriptPlaysTheStories(t *testing.T) {
	ms := time.Millisecond
	script := Script{
		CleanAt: 0, CleanMoveFor: 150 * ms,
		LingerAt: 200 * ms, LingerMoveFor: 150 * ms,
		RevokeAt: 400 * ms,
		LeakAt:   500 * ms, LeakBurst: 25, LeakPerSecond: 1,
	}
	tr := NewScripted(7, time.Now().UTC(), script)
	w := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var steps []Step
	var stepAt []int // how many messages were written when each step was reported
	done := make(chan error, 1)
	go func() {
		done <- tr.Run(ctx, w, "auth", "lifecycle", 4000, func(int) {}, func(s Step) {
			steps = append(steps, s)
			w.mu.Lock()
			stepAt = append(stepAt, len(w.msgs))
			w.mu.Unlock()
			if s.Kind == StepLeak {
				// Some traffic after the leak started, then stop.
				time.AfterFunc(300*ms, cancel)
			}
		})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	want := []struct {
		story int
		kind  StepKind
	}{
		{StoryCleanRotation, StepRotationStarted}, {StoryCleanRotation, StepMoved},
		{StoryLingering, StepRotationStarted}, {StoryLingering, StepMoved},
		{StoryRevokedInUse, StepRevoked}, {StoryLeak, StepLeak},
	}
	if len(steps) != len(want) {
		t.Fatalf("steps %+v, want %d", steps, len(want))
	}
	for i, s := range steps {
		if s.Story != want[i].story || s.Kind != want[i].kind {
			t.Fatalf("step %d is story %d %s, want story %d %s", i, s.Story, s.Kind, want[i].story, want[i].kind)
		}
	}
	clean, linger, in := tr.CleanRotation(), tr.Rotation(), tr.Incidents()

	type event struct {
		TS        time.Time `json:"ts"`
		Type      string    `json:"type"`
		KeyID     string    `json:"key_id"`
		ClientID  string    `json:"client_id"`
		IP        string    `json:"ip"`
		UserAgent string    `json:"user_agent"`
		Outcome   string    `json:"outcome"`
	}
	var lifecycle []string
	var cleanOld, cleanNew, lingerOld, lingerStraggler, lingerNew, revokedFails int
	leakIPs := map[string]bool{}
	for i, m := range w.msgs {
		var ev event
		if json.Unmarshal(m.Value, &ev) != nil || ev.TS.IsZero() {
			continue // malformed on purpose
		}
		if m.Topic == "lifecycle" {
			if ev.Type != "key.created" {
				lifecycle = append(lifecycle, ev.Type+" "+ev.KeyID)
			}
			continue
		}
		afterMoves := i >= stepAt[3] // both rotations moved
		switch {
		case ev.ClientID == clean.ClientID && afterMoves:
			if ev.KeyID == clean.OldKeyID {
				cleanOld++
			} else if ev.KeyID == clean.NewKeyID {
				cleanNew++
			}
		case ev.ClientID == linger.ClientID && afterMoves:
			switch {
			case ev.KeyID == linger.OldKeyID && ev.IP == linger.StragglerIP && ev.UserAgent == linger.StragglerUA:
				lingerStraggler++
			case ev.KeyID == linger.OldKeyID:
				lingerOld++
			case ev.KeyID == linger.NewKeyID:
				lingerNew++
			}
		case ev.KeyID == in.Revoked.OldKeyID && !ev.TS.Before(in.RevokedAt) && ev.Outcome == "revoked_key":
			revokedFails++
		case ev.KeyID == in.LeakedKeyID && len(ev.IP) > 11 && ev.IP[:11] == "45.134.140.":
			leakIPs[ev.IP] = true
		}
	}
	wantLifecycle := []string{
		"key.rotation_started " + in.Revoked.OldKeyID, // before the simulation
		"key.rotation_started " + clean.OldKeyID,
		"key.rotation_started " + linger.OldKeyID,
		"key.revoked " + in.Revoked.OldKeyID,
	}
	if len(lifecycle) != len(wantLifecycle) {
		t.Fatalf("lifecycle events %q, want %q", lifecycle, wantLifecycle)
	}
	for i := range lifecycle {
		if lifecycle[i] != wantLifecycle[i] {
			t.Fatalf("lifecycle events %q, want %q", lifecycle, wantLifecycle)
		}
	}
	if cleanOld != 0 || cleanNew == 0 {
		t.Errorf("after the move %s used the old key %d times, the new %d times", clean.ClientID, cleanOld, cleanNew)
	}
	if lingerOld != 0 || lingerStraggler == 0 || lingerNew == 0 {
		t.Errorf("after the move %s: %d old-key calls besides the straggler's %d, %d new-key calls", linger.ClientID, lingerOld, lingerStraggler, lingerNew)
	}
	if revokedFails == 0 {
		t.Error("no revoked_key failures after the revocation")
	}
	if len(leakIPs) < script.LeakBurst {
		t.Errorf("the leak came from %d addresses, want at least the burst's %d", len(leakIPs), script.LeakBurst)
	}
}
