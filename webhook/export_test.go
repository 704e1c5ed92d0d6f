package webhook

import "time"

// FastRetries makes o retry at once: tests wait on conditions, not on backoff.
func FastRetries(o *Outbox) { o.backoff, o.maxBackoff = time.Millisecond, time.Millisecond }
