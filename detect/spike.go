package detect

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

const (
	// spikeMinRate floors the baseline failure rate of the significance test and of z, so that a
	// client that never failed is not certain never to fail: one failure in a thousand requests is
	// the noise any client has (a key pasted wrong once, a retry after a deploy).
	spikeMinRate = 0.001
	// spikeTailPrecision stops the binomial tail's sum once a term adds less than this share of it:
	// far below any p-value min_z asks for.
	spikeTailPrecision = 1e-12
	// spikeWeeks is how many earlier weeks the same time of the week is compared over (it is also
	// the number of week ranges spikeSelectBaselines reads), and spikeSameHourRequests how many
	// requests they need for their rate to count.
	spikeWeeks            = 4
	spikeSameHourRequests = 200
	// spikeTop bounds the routes and keyless callers listed in evidence.
	spikeTop  = 5
	spikeWeek = 7 * 24 * time.Hour
)

// Spike finds authentication failures that rise after a rotation step: for each step (started,
// retired, revoked) within AfterStep, each affected client's failure rate in a short and a long
// window after the step is compared with its own rate before the step. A window must hold at least
// MinFailures failures and MinRate, and be significant: its one-sided binomial p-value against the
// baseline rate within that of MinZ. A thin window (fewer than MinFailures failures: a small
// client) is judged by the window since the step instead, so the floor scales with the client's
// volume: a partner refused on each of its 6 requests an hour qualifies within the hour.
type Spike struct {
	conn driver.Conn
	// models loads the rotation model (shared with the other detectors by All).
	models *rotation.Models
	cfg    config.Spike
}

// NewSpike returns the detector.
func NewSpike(conn driver.Conn, cfg config.Spike) *Spike {
	return &Spike{conn: conn, models: rotation.NewModels(conn), cfg: cfg}
}

// Name is the detector's name in findings, metrics and config.
func (d *Spike) Name() string { return "spike" }

// Detect returns one finding per rotation and client whose failures rose after a recent step.
func (d *Spike) Detect(ctx context.Context, now time.Time) ([]finding.Finding, error) {
	model, err := d.models.Load(ctx)
	if err != nil {
		return nil, err
	}
	cases, err := d.windows(ctx, model, now)
	if err != nil || len(cases) == 0 {
		return nil, err
	}
	keyless, err := d.keylessMinutes(ctx, cases, now)
	if err != nil {
		return nil, err
	}
	var candidates []*spikeCase
	for _, c := range cases {
		var short, long uint64
		for m, n := range keyless {
			if !m.Before(c.longFrom) {
				long += n
			}
			if !m.Before(c.shortFrom) {
				short += n
			}
		}
		// Whether the windows would rise if every keyless failure were the client's: an upper
		// bound, so that only candidates need a baseline. Keyless failures count in the long
		// window at most, the window since the step included.
		since := spikeTally{c.sinceStep.requests + long, c.sinceStep.failures + long}
		if d.rises(spikeTally{c.shortWin.requests + short, c.shortWin.failures + short}, since, 0, false) &&
			d.rises(spikeTally{c.longWin.requests + long, c.longWin.failures + long}, since, 0, false) {
			candidates = append(candidates, c)
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	if err := d.baselines(ctx, candidates, now); err != nil {
		return nil, err
	}
	if len(keyless) > 0 {
		if err := d.attributeKeyless(ctx, candidates, now); err != nil {
			return nil, err
		}
	}
	// Of the steps of one rotation that fire for a client, the latest is the one to blame: its
	// baseline already holds whatever the earlier steps did.
	best := map[[2]string]*spikeCase{}
	for _, c := range candidates {
		if !d.fires(c) {
			continue
		}
		id := [2]string{c.rot.ID, c.client}
		if b := best[id]; b == nil || c.step.At.After(b.step.At) {
			best[id] = c
		}
	}
	fire := slices.Collect(maps.Values(best))
	if len(fire) == 0 {
		return nil, nil
	}
	routes, err := d.routes(ctx, fire, now)
	if err != nil {
		return nil, err
	}
	if err := d.callers(ctx, fire, now); err != nil {
		return nil, err
	}
	out := make([]finding.Finding, len(fire))
	for i, c := range fire {
		out[i] = d.finding(c, routes[i], now)
	}
	return out, nil
}
