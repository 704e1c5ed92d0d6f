package rotation

import (
	"slices"
	"testing"
	"time"
)

// TestBuildKeyMetadata: each of version, expiry and scopes is the latest value stated by event
// time, whatever the arrival order; an event that says nothing clears nothing.
func TestBuildKeyMetadata(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	created := Event{TS: t0, Type: KeyCreated, KeyID: "k", ClientID: "acme", Version: "1", ExpiresAt: t0.Add(90 * 24 * time.Hour), Scopes: []string{"read"}}
	widened := Event{TS: t0.Add(time.Hour), Type: KeyCreated, KeyID: "k", ClientID: "acme", Scopes: []string{"read", "trade"}}
	bumped := Event{TS: t0.Add(2 * time.Hour), Type: KeyCreated, KeyID: "k", ClientID: "acme", Version: "2"}
	rotated := Event{TS: t0.Add(3 * time.Hour), Type: KeyRotationStarted, KeyID: "k", ClientID: "acme", NewKeyID: "k2",
		Scopes: []string{"read"}, ExpiresAt: t0.Add(4 * time.Hour)}
	retired := Event{TS: t0.Add(4 * time.Hour), Type: KeyRetired, KeyID: "k", ClientID: "acme"}
	plain := Event{TS: t0, Type: KeyCreated, KeyID: "k", ClientID: "acme"}

	cases := []struct {
		name    string
		events  []Event // arrival order
		version string
		expires time.Time
		scopes  []string
	}{
		{"no metadata", []Event{plain, retired}, "", time.Time{}, nil},
		{"created only", []Event{created}, "1", created.ExpiresAt, []string{"read"}},
		{"later events without it clear nothing", []Event{created, retired}, "1", created.ExpiresAt, []string{"read"}},
		{"each field from its latest event", []Event{created, widened, bumped}, "2", created.ExpiresAt, []string{"read", "trade"}},
		{"late arrival of an older event does not win", []Event{bumped, widened, created}, "2", created.ExpiresAt, []string{"read", "trade"}},
		{"rotation_started describes its key_id", []Event{created, widened, rotated, retired}, "1", rotated.ExpiresAt, []string{"read"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := Build(c.events).Key("k")
			if k.Version != c.version || !k.ExpiresAt.Equal(c.expires) || !slices.Equal(k.Scopes, c.scopes) {
				t.Fatalf("k: version %q expires %s scopes %v; want %q %s %v", k.Version, k.ExpiresAt, k.Scopes, c.version, c.expires, c.scopes)
			}
			if k.HasScope("trade") != slices.Contains(c.scopes, "trade") {
				t.Errorf("HasScope(trade) = %v with scopes %v", k.HasScope("trade"), k.Scopes)
			}
		})
	}
	// The successor of a rotation gets none of its predecessor's metadata.
	if k2 := Build([]Event{created, rotated}).Key("k2"); k2.Version != "" || !k2.ExpiresAt.IsZero() || k2.Scopes != nil {
		t.Errorf("k2 %+v inherited metadata", k2)
	}
}
