package backoff

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestDelayDoublesUpToMax(t *testing.T) {
	p := Policy{Initial: time.Second, Max: 10 * time.Second}
	var got []time.Duration
	w := p.Waits()
	for range 6 {
		got = append(got, w.Next())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	if !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
	w.Reset()
	if d := w.Next(); d != time.Second {
		t.Errorf("after Reset the first wait is %v, want 1s", d)
	}
	if d := p.Delay(0); d != time.Second {
		t.Errorf("Delay(0) = %v, want the initial 1s", d)
	}
	if d := p.Delay(1 << 20); d != 10*time.Second {
		t.Errorf("Delay of a millionth attempt = %v, want the cap", d)
	}
}

func TestJitterBounds(t *testing.T) {
	const d = 8 * time.Second
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	for _, c := range []struct {
		jitter   Jitter
		low, top time.Duration
	}{
		{None, d, d},
		{Equal, d / 2, d},
		{Spread, d * 3 / 4, d * 5 / 4},
		{Full, 1, d},
	} {
		p := Policy{Initial: d, Max: d, Jitter: c.jitter}
		if got := p.WaitWith(1, lowest); got != c.low {
			t.Errorf("jitter %d: lowest wait %v, want %v", c.jitter, got, c.low)
		}
		if got := p.WaitWith(1, highest); got != c.top {
			t.Errorf("jitter %d: highest wait %v, want %v", c.jitter, got, c.top)
		}
		for range 100 {
			if got := p.Wait(1); got < c.low || got > c.top {
				t.Fatalf("jitter %d: wait %v outside [%v, %v]", c.jitter, got, c.low, c.top)
			}
		}
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("a sleep that ran its course says it did not")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) || time.Since(start) > time.Second {
		t.Error("a sleep under an ended context did not return at once, saying so")
	}
}
