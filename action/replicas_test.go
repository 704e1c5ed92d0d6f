package action

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/config"
)

// Issue #14 (11): two Revokers on one ClickHouse, the elected daemon (its API and its leader loop)
// and a `keywatch revoke` CLI (or another replica's API), take manual revokes at once. Together
// they send at most revoke.max_per_hour, each action once; the others are refused by the cap and
// every requester is told its outcome.
//
// The receiver takes a while to answer, as a key-management system does: a second sender of one
// action, or a second decider counting the same hour, would overlap the first (before the fix,
// the CLI sent what it had decided while the daemon's loop sent it too: 5 runs of 5 failed with
// actions delivered twice, 3 of them with 4 revokes sent under a cap of 3).
func TestTwoRevokersShareCapAndDeliverOnce(t *testing.T) {
	const maxPerHour, requests = 3, 8
	slow := func(w http.ResponseWriter) { time.Sleep(20 * time.Millisecond); w.WriteHeader(http.StatusOK) }
	var script []func(http.ResponseWriter)
	for range 2 * requests {
		script = append(script, slow)
	}
	e := newEnv(t, func(c *config.Revoke) { c.MaxPerHour = maxPerHour }, script...)
	daemon, cli := e.r, e.revoker()
	e.lead(daemon)

	type outcome struct {
		status string
		err    error
	}
	outcomes := make([]outcome, requests)
	var wg sync.WaitGroup
	for i := range requests {
		key := fmt.Sprintf("kid_%d", i)
		e.lifecycle(t0.Add(-time.Hour), "key.created", key, "c1", "")
		r := []*Revoker{cli, daemon}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := r.Manual(e.ctx, key, "incident 9", "cli:alice")
			if err == nil {
				ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
				st, err = r.Await(ctx, st.ID)
				cancel()
			}
			if st != nil {
				outcomes[i].status = st.Status
			}
			outcomes[i].err = err
		}()
	}
	wg.Wait()

	perID := map[string]int{}
	for _, d := range e.rv.deliveries() {
		perID[d.ID]++
	}
	for id, n := range perID {
		if n != 1 {
			t.Errorf("action %s delivered %d times, want once", id, n)
		}
	}
	if len(perID) != maxPerHour {
		t.Errorf("%d revokes sent, want revoke.max_per_hour %d", len(perID), maxPerHour)
	}
	sent, capped := 0, 0
	for i, o := range outcomes {
		switch {
		case o.err == nil && o.status == stateSent:
			sent++
		case errors.Is(o.err, ErrHourlyCap) && o.status == stateRefused:
			capped++
		default:
			t.Errorf("request %d: %s %v, want sent, or refused by the hourly cap", i, o.status, o.err)
		}
	}
	if sent != maxPerHour || capped != requests-maxPerHour {
		t.Errorf("requesters told %d sent and %d refused by the cap, want %d and %d", sent, capped, maxPerHour, requests-maxPerHour)
	}
	if n := e.count(`SELECT count() FROM actions FINAL WHERE state = 'sent'`); n != maxPerHour {
		t.Errorf("%d actions stored sent, want %d", n, maxPerHour)
	}
}
