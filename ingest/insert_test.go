package ingest_test

import (
	"context"
	"testing"

	"github.com/keywatch/keywatch/ingest"
)

// TestABatchStoredAgainIsDroppedWhole: a batch larger than one insert block lands as one part per
// table, and storing it again, as a retry after a lost acknowledgement does, adds nothing to any
// table.
func TestABatchStoredAgainIsDroppedWhole(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	values := benchMessages(25_000) // several insert blocks
	for range 2 {
		if err := ingest.StoreBatch(ctx, e.conn, e.opts.Decoder, authTopic, values, benchStart); err != nil {
			t.Fatal(err)
		}
	}
	events, dead := e.count(t, `SELECT count() FROM auth_events`), e.count(t, `SELECT count() FROM dead_letters`)
	if events+dead != uint64(len(values)) || dead == 0 {
		t.Errorf("%d events and %d dead letters stored of %d messages, each of them once, want every message once", events, dead, len(values))
	}
	if n := e.count(t, `SELECT sum(requests) FROM key_usage`); n != events {
		t.Errorf("key_usage counts %d requests, want %d", n, events)
	}
	parts := e.count(t, `SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'auth_events' AND active`)
	if parts != 1 {
		t.Errorf("auth_events has %d parts, want 1: the insert's blocks squashed into one", parts)
	}
}
