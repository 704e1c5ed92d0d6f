package main

import (
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 20; i++ {
		v = append(v, time.Duration(i)*time.Second)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 10 * time.Second}, {95, 19 * time.Second}, {100, 20 * time.Second}, {1, time.Second}} {
		if got := percentile(v, c.p); got != c.want {
			t.Errorf("p%v of 1..20 s = %s, want %s", c.p, got, c.want)
		}
	}
}

func TestMissedInjectionsCountAsNever(t *testing.T) {
	var as []announced
	for i := range 20 {
		as = append(as, announced{found: i != 7, latency: time.Duration(i+1) * time.Second})
	}
	s := summarize(as)
	if s.missed != 1 || s.p95 != 20*time.Second || s.max != never {
		t.Errorf("one of 20 missed: %+v, want 1 missed, p95 20s, max never", s)
	}
	as[3].found = false
	if s := summarize(as); s.p95 != never {
		t.Errorf("two of 20 missed: p95 %s, want never", seconds(s.p95))
	}
}

func TestMatchTakesTheFirstMessageOfItsDetectorNamingItsKey(t *testing.T) {
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	s := &subject{kind: kindSpike, oldKey: "kid_live_spike_001_a"}
	inj := []injection{{subject: s, detectable: at}}
	arrivals := []arrival{
		{at: at.Add(-time.Second), text: "spike on rotation kid_live_spike_001_a>kid_live_spike_001_b"},     // before it
		{at: at.Add(2 * time.Second), text: "leak on kid_live_spike_001_a"},                                 // another detector
		{at: at.Add(3 * time.Second), text: "spiked on rotation kid_live_spike_001_a>kid_live_spike_001_b"}, // not the word
		{at: at.Add(4 * time.Second), text: "critical spike: acme", blocks: `[{"text":"kid_live_spike_001_a"}]`},
		{at: at.Add(5 * time.Second), text: "spike on rotation kid_live_spike_001_a>kid_live_spike_001_b"},
	}
	got := match(inj, arrivals, time.Minute)
	if !got[0].found || got[0].latency != 4*time.Second {
		t.Errorf("match = %+v, want found after 4s", got[0])
	}
	if got := match(inj, arrivals, 3*time.Second); got[0].found {
		t.Errorf("with a 3s timeout: %+v, want missed", got[0])
	}
	if n := early(inj, arrivals); n != 1 {
		t.Errorf("early = %d, want 1", n)
	}
}
