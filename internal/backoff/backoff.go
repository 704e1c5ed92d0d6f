// Package backoff owns the waits between retries: a delay that doubles from an initial value up to
// a cap, randomized as the caller chooses, and a sleep that ends with its context. It does not own
// what is retried, which errors are worth a retry, or when to give up.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Jitter says how a wait is drawn around the policy's delay d.
type Jitter int

const (
	// None waits exactly d.
	None Jitter = iota
	// Equal waits d/2 plus a random part of up to d/2.
	Equal
	// Spread waits between 75 % and 125 % of d.
	Spread
	// Full waits a random time in (0, d].
	Full
)

// Policy is a capped exponential backoff: the delay after failed attempt n (1 for the first) is
// Initial doubled n-1 times, at most Max, and the wait is drawn around it as Jitter says.
type Policy struct {
	Initial, Max time.Duration
	Jitter       Jitter
}

// Delay is the delay after failed attempt n before jitter; n below 1 counts as 1.
func (p Policy) Delay(n int) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// Wait is the wait after failed attempt n, its randomness from math/rand/v2.
func (p Policy) Wait(n int) time.Duration { return p.WaitWith(n, rand.Int64N) }

// WaitWith is Wait with its randomness from randN, which returns a number in [0, n) as
// rand.Int64N does: tests pass one that is not random.
func (p Policy) WaitWith(n int, randN func(n int64) int64) time.Duration {
	d := p.Delay(n)
	if d <= 0 {
		return 0
	}
	switch p.Jitter {
	case Equal:
		return d/2 + time.Duration(randN(int64(d/2)+1))
	case Spread:
		return d - d/4 + time.Duration(randN(int64(d/2)+1))
	case Full:
		return time.Duration(randN(int64(d)) + 1)
	default:
		return d
	}
}

// Waits is the sequence of waits of one retry loop under a policy.
type Waits struct {
	policy Policy
	failed int
}

// Waits starts a sequence of waits under p.
func (p Policy) Waits() *Waits { return &Waits{policy: p} }

// Next counts one more failed attempt and returns the wait after it.
func (w *Waits) Next() time.Duration {
	w.failed++
	return w.policy.Wait(w.failed)
}

// Reset starts the sequence over after a success: the next failure waits the shortest.
func (w *Waits) Reset() { w.failed = 0 }

// Sleep waits d or until ctx ends; it reports whether the whole d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
