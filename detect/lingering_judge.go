package detect

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// cadence is a sub-caller's rhythm over the cadence lookback: in how many hours it was active on
// the keys of the rotation's chain, and the longest and second-longest gap between two of them.
type cadence struct {
	ActiveHours     int
	Longest, Second time.Duration
}

// usualGap is the longest gap between its active hours that recurs: the second-longest (a gap
// seen once, like an outage or a holiday, is not its rhythm; a weekend that recurs is), the one
// gap there is with two active hours, and unknown (false) with fewer.
func (c cadence) usualGap() (time.Duration, bool) {
	switch {
	case c.ActiveHours < 2:
		return 0, false
	case c.ActiveHours == 2:
		return c.Longest, true
	}
	return c.Second, true
}

// Cadences read as words: a usual gap within cadenceSlack of a day or week is "about daily" or
// "about weekly" (a job drifts by minutes, and hours are the rollup's granularity).
const cadenceSlack = 3 * time.Hour

// text says the rhythm for people, to follow "runs".
func (c cadence) text(lookback time.Duration) string {
	g, ok := c.usualGap()
	switch {
	case !ok:
		return fmt.Sprintf("rarely (active in %s of the last %s)", plural(c.ActiveHours, "hour", "hours"), Span(lookback))
	case g <= time.Hour:
		return "hourly or more often"
	case (g - 24*time.Hour).Abs() <= cadenceSlack:
		return "about daily"
	case (g - 7*24*time.Hour).Abs() <= 4*cadenceSlack:
		return "about weekly"
	}
	return "about every " + Span(g)
}

// quietNeeded is how long a sub-caller must not have succeeded with r's old key to count as gone
// from it: CadenceFactor times its usual gap (a daily job needs more than a day of silence), at
// least QuietFor. Hours are the rollup's granularity, so a caller active hour after hour needs
// QuietFor once seen on a later key since its last success (the rule for a caller that switched),
// and CadenceFactor times two hours when not. Without a known rhythm it is QuietFor for one seen on
// a later key of the chain since, and the cadence lookback for one that was not (it may run
// monthly). A caller seen on a later key, or without a known rhythm, needs no longer than r's
// grace period (deadline − start): what stayed quiet that long does not count on the key. A
// caller with a known rhythm never seen on a later key gets no such bound: a weekly job that last
// ran before a 3-day grace period breaks at its next run, after the deadline, so it remains until
// it has missed its rhythm or shows up on a later key.
func (d *Lingering) quietNeeded(r *rotation.Rotation, c cadence, moved bool) time.Duration {
	need := time.Duration(d.cfg.CadenceLookback)
	g, known := c.usualGap()
	switch ok := known; {
	case ok && g <= time.Hour && moved:
		need = 0 // active hour after hour and seen on a later key since: quiet_for judges it
	case ok && g <= time.Hour:
		// Active hour after hour: two calls in adjacent hours may be up to two hours apart.
		need = time.Duration(d.cfg.CadenceFactor * float64(2*time.Hour))
	case ok:
		need = time.Duration(d.cfg.CadenceFactor * float64(g))
	case moved:
		need = 0
	}
	if grace := r.Deadline.Sub(r.Started); (moved || !known) && !r.Deadline.IsZero() && grace > 0 {
		need = min(need, grace)
	}
	return max(need, time.Duration(d.cfg.QuietFor))
}

// maxListedSubCallers is how many of a client's (IP, user agent) pairs still on a key a finding
// and a readiness answer name: enough to point at the job or host, few enough to read; the
// rest are counted.
const maxListedSubCallers = 3

// judged is the callers of a rotation's old key since(r): those that still depend on it
// (remaining, latest first) and those whose every request since was refused (refused).
type judged struct {
	remaining, refused []Caller
	// successful are the callers (callerID.caller()) with a request that succeeded in the window,
	// remaining or not.
	successful map[callerID]bool
}

// succeeded reports whether any request of any caller succeeded in the window.
func (j judged) succeeded() bool { return len(j.successful) > 0 }

// reported returns the callers (callerID.caller()) of j's remaining and refused.
func (j judged) reported() map[callerID]bool {
	out := map[callerID]bool{}
	for _, cs := range [][]Caller{j.remaining, j.refused} {
		for _, c := range cs {
			out[callerID{client: c.ClientID, ip: c.IP, ua: c.UserAgent}] = true
		}
	}
	return out
}

// remaining judges the callers of r's old key as of now. old is each sub-caller's traffic with the
// old key since(r) (a client's (IP, user agent) pairs, or a caller without a client), succ its
// traffic with the later keys of r's chain, next each caller's traffic with them (a client's per
// user agent over all its addresses, and over all: see withClients), cad each sub-caller's rhythm
// and each client's user agent's. A sub-caller depends on the key when a request of it succeeded since(r) and it has not
// been quiet for its quietNeeded since its last success: whether or not it was seen on a later key
// since (a daily job that calls both keys each night has, and calls the old one again tonight).
// One whose every request since(r) was refused does not depend on the key. A client remains while
// any of its pairs does, and is refused when every request of all its pairs was; so is a caller
// without a client. The new-key share compares the same pairs' traffic on the old key and the
// later ones.
func (d *Lingering) remaining(r *rotation.Rotation, now time.Time, old, succ, next map[callerID]subUse, cad map[callerID]cadence) judged {
	from := since(r)
	type group struct {
		subs             map[callerID]subUse
		stillOn          []SubCaller
		refused, success int
	}
	groups := map[callerID]*group{}
	out := judged{remaining: []Caller{}, refused: []Caller{}, successful: map[callerID]bool{}}
	for id, u := range old {
		if u.LastSeen.Before(from) {
			continue
		}
		gid := id.caller()
		g := groups[gid]
		if g == nil {
			g = &group{subs: map[callerID]subUse{}}
			groups[gid] = g
		}
		g.subs[id] = u
		if !u.okSince(from) {
			g.refused++
			continue
		}
		g.success++
		out.successful[gid] = true
		s, quiet := succ[id], now.Sub(u.LastOK)
		moved := s.LastOK.After(u.LastOK)
		if !needsRhythm(u, from, now, time.Duration(d.cfg.QuietFor)) {
			// Within quiet_for, every caller's floor: it depends on the key whatever its rhythm,
			// which was not read (cadences).
			sc := SubCaller{IP: id.ip, UserAgent: id.ua, Requests: u.Requests, Failures: u.Failures, LastSeen: u.LastSeen, LastOK: u.LastOK,
				QuietNeeded: "at least " + Span(time.Duration(d.cfg.QuietFor)), QuietSoFar: Span(quiet)}
			if moved {
				last := s.LastOK
				sc.SuccessorLastOK = &last
			}
			g.stillOn = append(g.stillOn, sc)
			continue
		}
		rhythm := cad[id]
		if _, known := rhythm.usualGap(); !known && id.client != "" {
			// An address seen in one hour only (a phone's, a CI runner's, a job's new container) is
			// judged by its client's user agent over all its addresses: its rhythm, and moved once
			// that user agent succeeded with a later key after it.
			agent := callerID{client: id.client, ua: id.ua}
			rhythm = cad[agent]
			if a := next[agent]; a.LastOK.After(u.LastOK) {
				moved, s = true, a
			}
		}
		need := d.quietNeeded(r, rhythm, moved)
		if g, known := rhythm.usualGap(); moved && known && s.LastOK.Sub(u.LastOK) >= g/2 {
			// It ran again since, on a later key only (the nightly job ran tonight with the new
			// key): quiet_for judges it, as a caller that switched.
			need = time.Duration(d.cfg.QuietFor)
		}
		if quiet >= need {
			continue
		}
		sc := SubCaller{IP: id.ip, UserAgent: id.ua, Requests: u.Requests, Failures: u.Failures, LastSeen: u.LastSeen, LastOK: u.LastOK,
			Cadence: rhythm.text(time.Duration(d.cfg.CadenceLookback)), QuietNeeded: Span(need), QuietSoFar: Span(quiet)}
		if moved {
			last := s.LastOK
			sc.SuccessorLastOK = &last
		}
		g.stillOn = append(g.stillOn, sc)
	}
	for gid, g := range groups {
		c := summarize(gid, g.subs, next[gid])
		switch {
		case len(g.stillOn) > 0:
			slices.SortFunc(g.stillOn, func(a, b SubCaller) int {
				return cmp.Or(b.LastOK.Compare(a.LastOK), cmp.Compare(a.IP, b.IP), cmp.Compare(a.UserAgent, b.UserAgent))
			})
			if gid.client == "" {
				c.Cadence, c.QuietNeeded = g.stillOn[0].Cadence, g.stillOn[0].QuietNeeded
			} else {
				c.SubCallers, c.StillOn = len(g.stillOn), g.stillOn[:min(len(g.stillOn), maxListedSubCallers)]
				c.RefusedSubCallers = g.refused
			}
			out.remaining = append(out.remaining, c)
		case g.success == 0:
			out.refused = append(out.refused, c)
		}
	}
	sortCallers(out.remaining)
	sortCallers(out.refused)
	return out
}

// needsRhythm reports whether the answer for a sub-caller with use u of an old key since from
// depends on its rhythm: it succeeded with the key since from, quietFor or longer ago (a caller
// quieter than that depends on the key whatever its rhythm, since quietNeeded is never shorter).
// Only those have their rhythm read, which keeps the read to the callers that went quiet.
func needsRhythm(u subUse, from, now time.Time, quietFor time.Duration) bool {
	return !u.LastSeen.Before(from) && u.okSince(from) && now.Sub(u.LastOK) >= quietFor
}

// summarize is the caller gid (a client, or a caller without a client) from its sub-callers'
// traffic with the old key (subs) and its traffic with the later keys (next): requests and
// failures summed, the earliest first and latest last seen and last success; for a client its
// topCounts busiest addresses and user agents.
func summarize(gid callerID, subs map[callerID]subUse, next subUse) Caller {
	c := Caller{ClientID: gid.client, IP: gid.ip, UserAgent: gid.ua}
	var sum subUse
	ips, uas := map[string]uint64{}, map[string]uint64{}
	for id, u := range subs {
		sum.add(u)
		ips[id.ip] += u.Requests
		uas[id.ua] += u.Requests
	}
	c.Requests, c.Failures, c.FirstSeen, c.LastSeen = sum.Requests, sum.Failures, sum.FirstSeen, sum.LastSeen
	if !sum.LastOK.IsZero() {
		last := sum.LastOK
		c.LastOK = &last
	}
	if next.Requests > 0 {
		last := next.LastSeen
		c.NewKeyRequests, c.NewKeyLastSeen = next.Requests, &last
	}
	c.NewKeyShare = float64(c.NewKeyRequests) / float64(c.Requests+c.NewKeyRequests)
	if gid.client != "" {
		c.TopIPs, c.TopUserAgents = top(ips, topCounts), top(uas, topCounts)
	}
	return c
}

// withClients adds to next, each caller's traffic with the later keys of a chain (a client's per
// user agent, with no ip), each client's over all its user agents (callerID{client}).
func withClients(next map[callerID]subUse) map[callerID]subUse {
	for id, u := range maps.Clone(next) {
		if id.client != "" {
			sum := next[callerID{client: id.client}]
			sum.add(u)
			next[callerID{client: id.client}] = sum
		}
	}
	return next
}

// usedSince judges the callers of a key no rotation retires: a caller depends on it when any of
// its requests since from succeeded, and is refused when none did.
func usedSince(subs map[callerID]subUse, from time.Time) judged {
	groups := map[callerID]map[callerID]subUse{}
	for id, u := range subs {
		if u.LastSeen.Before(from) {
			continue
		}
		gid := id.caller()
		if groups[gid] == nil {
			groups[gid] = map[callerID]subUse{}
		}
		groups[gid][id] = u
	}
	out := judged{remaining: []Caller{}, refused: []Caller{}}
	for gid, g := range groups {
		c := summarize(gid, g, subUse{})
		if c.LastOK != nil && !c.LastOK.Before(from) {
			out.remaining = append(out.remaining, c)
		} else {
			out.refused = append(out.refused, c)
		}
	}
	sortCallers(out.remaining)
	sortCallers(out.refused)
	return out
}

// refusedPhrase says the refused-only callers cs (latest first) for a readiness reason, empty
// when there are none: "; 3 refused attempts from old-cron, last 2h ago, not use".
func refusedPhrase(cs []Caller, now time.Time) string {
	if len(cs) == 0 {
		return ""
	}
	var n uint64
	for _, c := range cs {
		n += c.Requests
	}
	who := cs[0].name()
	if len(cs) > 1 {
		who = fmt.Sprintf("%d callers (latest %s)", len(cs), who)
	}
	return fmt.Sprintf("; %s from %s, last %s ago, were all refused (not use)", plural(int(n), "attempt", "attempts"), who, Span(now.Sub(cs[0].LastSeen)))
}

// successorUse sums each sub-caller's traffic with the keys of chain.
func successorUse(u keyUse, chain []string) map[callerID]subUse {
	out := map[callerID]subUse{}
	for _, k := range chain {
		for id, s := range u[k] {
			sum := out[id]
			sum.add(s)
			out[id] = sum
		}
	}
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
		if x.LastOK != nil && (c.LastOK == nil || x.LastOK.After(*c.LastOK)) {
			last := *x.LastOK
			c.LastOK = &last
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
	f.Summary += stillOnPhrase(c, now)
	f.Score = base + math.Log10(1+float64(c.Requests))
	f.Evidence, f.Fields = ev, ev.fields()
	return f
}

// stillOnPhrase ends a finding's summary with what of caller c is still on the key: a client's
// pairs (the latest, and how many), or the rhythm of a caller without a client.
func stillOnPhrase(c Caller, now time.Time) string {
	switch {
	case len(c.StillOn) > 0:
		s := c.StillOn[0]
		what := "still on it: " + s.name()
		if c.SubCallers > 1 {
			what = fmt.Sprintf("%d of its addresses and user agents still on it, latest %s", c.SubCallers, s.name())
		}
		if s.Cadence == "" { // within quiet_for: its rhythm does not matter
			return fmt.Sprintf("; %s, last %s ago", what, Span(now.Sub(s.LastOK)))
		}
		return fmt.Sprintf("; %s, last %s ago, runs %s: quiet %s needed", what, Span(now.Sub(s.LastOK)), s.Cadence, s.QuietNeeded)
	case c.Cadence != "":
		return fmt.Sprintf("; runs %s: quiet %s needed", c.Cadence, c.QuietNeeded)
	}
	return ""
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
