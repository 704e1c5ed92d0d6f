package detect

import (
	"testing"
	"time"

	"github.com/keywatch/keywatch/rotation"
)

// TestModelsReadAgainOnlyAfterNewEvents: the detectors' shared rotation model is read once, kept
// while the lifecycle events stay the same, and read again once an event arrives.
func TestModelsReadAgainOnlyAfterNewEvents(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	s.lifecycle(rotation.Event{TS: now.Add(-time.Hour), Type: rotation.KeyCreated, KeyID: "kid_a", ClientID: "acme"})
	models := rotation.NewModels(s.conn)
	first, err := models.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	again, err := models.Load(t.Context())
	if err != nil || again != first {
		t.Fatalf("second load: %p (%v), want the first model %p", again, err, first)
	}
	s.lifecycle(rotation.Event{TS: now.Add(-time.Minute), Type: rotation.KeyCreated, KeyID: "kid_b", ClientID: "acme"})
	after, err := models.Load(t.Context())
	if err != nil || after == first || after.Key("kid_b") == nil || after.Key("kid_a") == nil {
		t.Fatalf("load after a new event: %p with kid_a %v and kid_b %v (%v), want a new model with both", after, after.Key("kid_a") != nil, after.Key("kid_b") != nil, err)
	}
}
