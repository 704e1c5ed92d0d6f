package detect

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// remaining returns the callers of r's old key that still depend on it as of now, latest first.
// A caller remains when it used the old key since(r) (since the rotation started; once it
// finished, since then) and either has not used the new key since its last old-key call or made
// that call within QuietFor. So a straggler calling only with the old key remains however sparse
// its calls, and a caller that switched is released QuietFor after its last old-key call. The
// new-key share compares the same caller's traffic on both keys.
func (d *Lingering) remaining(r *rotation.Rotation, now time.Time, u usage) []Caller {
	out := []Caller{}
	for id, old := range u[r.OldKeyID] {
		if old.LastSeen.Before(since(r)) {
			continue
		}
		c := *old
		if n := u[r.NewKeyID][id]; n != nil {
			last := n.LastSeen
			c.NewKeyRequests, c.NewKeyLastSeen = n.Requests, &last
		}
		c.NewKeyShare = float64(c.NewKeyRequests) / float64(c.Requests+c.NewKeyRequests)
		moved := c.NewKeyLastSeen != nil && c.NewKeyLastSeen.After(c.LastSeen)
		if moved && now.Sub(c.LastSeen) >= time.Duration(d.cfg.QuietFor) {
			continue
		}
		out = append(out, c)
	}
	sortCallers(out)
	return out
}

func sortCallers(cs []Caller) {
	slices.SortFunc(cs, func(a, b Caller) int {
		return cmp.Or(b.LastSeen.Compare(a.LastSeen), cmp.Compare(a.ClientID, b.ClientID), cmp.Compare(a.IP, b.IP), cmp.Compare(a.UserAgent, b.UserAgent))
	})
}

// unidentified reports the callers cs of r's old key that have no client in one finding, however
// many there are: with one, it names it as finding does; with several, it counts them and sums
// their traffic (see merge). Its fingerprint stays the same as callers come and go.
func (d *Lingering) unidentified(r *rotation.Rotation, cs []Caller, now time.Time) finding.Finding {
	c, addresses, userAgents := merge(cs)
	var f finding.Finding
	if len(cs) == 1 {
		f = d.finding(r, c, c.name(), false, now)
	} else {
		who := fmt.Sprintf("%d callers without a client (%s, %s)",
			len(cs), plural(addresses, "address", "addresses"), plural(userAgents, "user agent", "user agents"))
		f = d.finding(r, c, who, true, now)
	}
	f.Fingerprint = finding.Fingerprint(d.Name(), r.OldKeyID, unidentifiedCallers, r.ID)
	ev := f.Evidence.(LingeringEvidence)
	ev.Callers, ev.Addresses, ev.UserAgents = len(cs), addresses, userAgents
	f.Evidence, f.Fields = ev, ev.fields()
	return f
}

// merge returns the one caller of cs, or for several callers without a client, one that stands
// for them: no IP nor user agent, their requests, failures and new-key traffic summed, the
// earliest first and latest last seen, and their topCounts busiest addresses and user agents. It
// also returns how many distinct addresses and user agents cs used.
func merge(cs []Caller) (c Caller, addresses, userAgents int) {
	if len(cs) == 1 {
		return cs[0], 1, 1
	}
	ips, uas := map[string]uint64{}, map[string]uint64{}
	for i, x := range cs {
		ips[x.IP] += x.Requests
		uas[x.UserAgent] += x.Requests
		c.Requests += x.Requests
		c.Failures += x.Failures
		c.NewKeyRequests += x.NewKeyRequests
		if i == 0 || x.FirstSeen.Before(c.FirstSeen) {
			c.FirstSeen = x.FirstSeen
		}
		if x.LastSeen.After(c.LastSeen) {
			c.LastSeen = x.LastSeen
		}
		if x.NewKeyLastSeen != nil && (c.NewKeyLastSeen == nil || x.NewKeyLastSeen.After(*c.NewKeyLastSeen)) {
			last := *x.NewKeyLastSeen
			c.NewKeyLastSeen = &last
		}
	}
	c.NewKeyShare = float64(c.NewKeyRequests) / float64(c.Requests+c.NewKeyRequests)
	c.TopIPs, c.TopUserAgents = top(ips, topCounts), top(uas, topCounts)
	return c, len(ips), len(uas)
}

// plural writes n with the word for one or for many.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// top returns the n values of m with the most requests, most first (then by value).
func top(m map[string]uint64, n int) []Count {
	out := make([]Count, 0, len(m))
	for v, r := range m {
		out = append(out, Count{v, r})
	}
	slices.SortFunc(out, func(a, b Count) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Value, b.Value))
	})
	return out[:min(n, len(out))]
}

// finding reports caller c of r's old key, named who in the summary (several callers when many).
// Score = base + log10(1 + requests with the old key): base grows linearly from 0 to 10 as the
// deadline comes from InfoBefore away to due (10 once it passed), and is 100 for use after
// retirement or revocation, so that use ranks above anything.
func (d *Lingering) finding(r *rotation.Rotation, c Caller, who string, many bool, now time.Time) finding.Finding {
	f := finding.New(d.Name(), now, r.OldKeyID, c.ClientID, r.ID)
	left := r.Deadline.Sub(now)
	ev := LingeringEvidence{
		RotationID: r.ID, OldKeyID: r.OldKeyID, NewKeyID: r.NewKeyID, Step: string(step(r)),
		Started: r.Started, Since: since(r), Caller: c,
	}
	if !r.Deadline.IsZero() {
		deadline := r.Deadline
		ev.Deadline, ev.TimeLeft = &deadline, roundLeft(left).String()
	}
	window := "since the rotation started"
	if !r.Running() {
		window = "since then"
	}
	calls, its := "calls", "its"
	if many {
		calls, its = "call", "their"
	}
	traffic := fmt.Sprintf("%d requests %s, last %s ago; %.0f%% of %s traffic is on %s",
		c.Requests, window, Span(now.Sub(c.LastSeen)), 100*c.NewKeyShare, its, r.NewKeyID)
	base := 100.0
	switch {
	case !r.Running():
		finished := r.Finished
		ev.Finished = &finished
		f.Severity = finding.Critical
		f.Summary = fmt.Sprintf("%s still %s %s, %s %s ago (%s)", who, calls, r.OldKeyID, step(r), Span(now.Sub(r.Finished)), traffic)
	default:
		info := time.Duration(d.cfg.InfoBefore)
		base = 10 * min(1, max(0, 1-float64(left)/float64(info)))
		switch {
		case left <= time.Duration(d.cfg.CriticalBefore):
			f.Severity = finding.Critical
		case left <= time.Duration(d.cfg.WarningBefore):
			f.Severity = finding.Warning
		default:
			f.Severity = finding.Info
		}
		deadline := "deadline in " + Span(left)
		if left < 0 {
			deadline = "deadline passed " + Span(-left) + " ago"
		}
		f.Summary = fmt.Sprintf("%s still %s %s; %s (%s)", who, calls, r.OldKeyID, deadline, traffic)
	}
	f.Score = base + math.Log10(1+float64(c.Requests))
	f.Evidence, f.Fields = ev, ev.fields()
	return f
}

// step is the furthest step r reached.
func step(r *rotation.Rotation) rotation.StepKind {
	switch {
	case r.Running():
		return rotation.StepStarted
	case slices.ContainsFunc(r.Steps, func(s rotation.Step) bool { return s.Kind == rotation.StepRevoked }):
		return rotation.StepRevoked
	}
	return rotation.StepRetired
}

// listed returns at most n of cs (sorted latest first), still latest first, and how many it left
// out. Identified clients are kept before callers without a client, whose identities whoever
// calls chooses: a key tried with thousands of user agents must not hide the client still on it.
func listed(cs []Caller, n int) ([]Caller, int) {
	if len(cs) <= n {
		return cs, 0
	}
	keep := slices.Clone(cs)
	anonymous := func(c Caller) int {
		if c.ClientID == "" {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(keep, func(a, b Caller) int { return cmp.Compare(anonymous(a), anonymous(b)) })
	keep = keep[:n]
	sortCallers(keep)
	return keep, len(cs) - n
}

// callersPhrase names how many callers there are and the latest of cs (sorted latest first).
func callersPhrase(cs []Caller, now time.Time) string {
	c := cs[0]
	if len(cs) == 1 {
		return fmt.Sprintf("1 caller (%s, last %s ago)", c.name(), Span(now.Sub(c.LastSeen)))
	}
	return fmt.Sprintf("%d callers (latest %s, %s ago)", len(cs), c.name(), Span(now.Sub(c.LastSeen)))
}

// Span writes a duration for people, to the minute: 2d3h, 5h, 5h30m, 12m, 0m (negative as 0m).
func Span(d time.Duration) string {
	d = max(0, d).Truncate(time.Minute)
	days, hours, mins := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case days > 0 && hours > 0:
		return fmt.Sprintf("%dd%dh", days, hours)
	case days > 0:
		return fmt.Sprintf("%dd", days)
	case hours > 0 && mins > 0:
		return fmt.Sprintf("%dh%dm", hours, mins)
	case hours > 0:
		return fmt.Sprintf("%dh", hours)
	}
	return fmt.Sprintf("%dm", mins)
}

// roundLeft rounds the time left to a deadline to the minute (to the second in its last minute),
// as people read it.
func roundLeft(d time.Duration) time.Duration {
	if d > -time.Minute && d < time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Minute)
}
