package alerting

import (
	"context"
	"time"
)

// Observer is told every alert after each evaluation pass: open ones and those resolved within the
// last day, as the pass left them (states, muting, actions), ordered by fingerprint. Observe is
// called on the evaluator's goroutine and must return at once: it hands the alerts off (for
// example to a sender of its own) and never waits on I/O, so that notifications and the Actor
// never wait on an observer. The slice and what the alerts hold are shared; Observe must not
// change them.
type Observer interface {
	Observe(ctx context.Context, alerts []Alert, now time.Time)
}

// WithObservers adds observers, each told every alert after each pass, and returns e.
func (e *Evaluator) WithObservers(obs ...Observer) *Evaluator {
	e.observers = append(e.observers, obs...)
	return e
}

// observe gives every observer the alerts of a pass (sorted by fingerprint).
func (e *Evaluator) observe(ctx context.Context, all []stored, now time.Time) {
	if len(e.observers) == 0 {
		return
	}
	alerts := make([]Alert, len(all))
	for i, a := range all {
		alerts[i] = a.Alert
	}
	for _, o := range e.observers {
		o.Observe(ctx, alerts, now)
	}
}
