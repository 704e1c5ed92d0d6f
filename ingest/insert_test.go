package ingest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keywatch/keywatch/ingest"
)

// TestABatchStoredAgainIsDroppedWhole: a batch larger than one insert block, whose rollups are
// too, lands as one part per table, and storing it again, as a retry after a lost
// acknowledgement does, adds nothing to any table.
func TestABatchStoredAgainIsDroppedWhole(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	const n = 25_000 // several insert blocks
	values := make([][]byte, n)
	for i := range values { // a key each: as many rows in key_usage
		values[i] = fmt.Appendf(nil, `{"ts":%q,"key_id":"kid_%d","client_id":"c%d","status":200,"ip":"198.51.100.%d","request_id":"r-%d"}`,
			benchStart.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), i, i%7, i%250, i)
	}
	values[n/2] = []byte(`{"ts":`) // and a dead letter
	for range 2 {
		if err := ingest.StoreBatch(ctx, e.conn, e.opts.Decoder, authTopic, values, benchStart); err != nil {
			t.Fatal(err)
		}
	}
	if events, dead := e.count(t, `SELECT count() FROM auth_events`), e.count(t, `SELECT count() FROM dead_letters`); events != n-1 || dead != 1 {
		t.Errorf("%d events and %d dead letters stored, want %d and 1", events, dead, n-1)
	}
	if rows, requests := e.count(t, `SELECT count() FROM key_usage`), e.count(t, `SELECT sum(requests) FROM key_usage`); rows != n-1 || requests != n-1 {
		t.Errorf("key_usage has %d rows counting %d requests, want %d and %d", rows, requests, n-1, n-1)
	}
	for _, table := range []string{"auth_events", "key_usage"} {
		if parts := e.count(t, `SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = ? AND active`, table); parts != 1 {
			t.Errorf("%s has %d parts, want 1: the insert's blocks squashed into one", table, parts)
		}
	}
}
