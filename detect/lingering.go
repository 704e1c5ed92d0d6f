package detect

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// noRotationLookback is how far back Readiness looks for callers of a key that no rotation is
// retiring: a key used within it is not safe to retire. Thirty days covers monthly jobs.
const noRotationLookback = 30 * 24 * time.Hour

// Callers without a client are (IP, user agent) pairs, and whoever calls chooses both: a key tried
// with 5,000 user agents has 5,000 of them. So the lingering detector reports them in one finding
// per rotation, whatever their number (its fingerprint has unidentifiedCallers in the client's
// place, and stays the same as they come and go), and a readiness answer lists at most
// maxListedCallers callers (identified clients first) and counts the rest.
const (
	unidentifiedCallers = "(unidentified callers)"
	maxListedCallers    = 50
	// topCounts is how many addresses and user agents a caller's TopIPs and TopUserAgents keep
	// (selectCallers keeps as many).
	topCounts = 5
)

// selectCallers reads who called each key, per caller: a client over all its addresses and user
// agents (with its 5 busiest of each), or an (IP, user agent) pair when the client is unknown.
// Arguments: the keys, the earliest window start (unix seconds; prunes partitions), then the keys
// again with each one's own window start. Windows start at the top of the hour of their start (the
// rollup's granularity), so a caller's counts may include up to an hour before it; last_seen is
// exact. IPv4 addresses are shown without their ::ffff: prefix. The query reads about every row
// since the earliest window start: a granule holds the rows of many keys, so key_id IN prunes
// little (20M stored events, 10,000 keys, 500 rotations: 2.4M rows read, ~0.25 s).
const selectCallers = `
SELECT
    key_id,
    client_id,
    if(client_id = '', ip_text, '') AS caller_ip,
    if(client_id = '', user_agent, '') AS caller_ua,
    sum(requests),
    sum(failures),
    min(first_seen),
    max(last_seen),
    arraySlice(arraySort((v, n) -> (-n, v), (sumMap([ip_text], [requests]) AS ips).1, ips.2), 1, 5),
    arraySlice(arraySort((n, v) -> (-n, v), ips.2, ips.1), 1, 5),
    arraySlice(arraySort((v, n) -> (-n, v), (sumMap([user_agent], [requests]) AS uas).1, uas.2), 1, 5),
    arraySlice(arraySort((n, v) -> (-n, v), uas.2, uas.1), 1, 5)
FROM
(
    SELECT
        key_id,
        client_id,
        replaceRegexpOne(IPv6NumToString(ip), '^::ffff:([0-9.]+)$', '\\1') AS ip_text,
        user_agent,
        sum(requests) AS requests,
        sum(failures) AS failures,
        min(first_seen) AS first_seen,
        max(last_seen) AS last_seen
    FROM key_callers_1h
    WHERE key_id IN ?
      AND hour >= toStartOfHour(toDateTime(?, 'UTC'))
      AND hour >= toStartOfHour(toDateTime(transform(toString(key_id), ?, ?, 0), 'UTC'))
    GROUP BY key_id, client_id, ip, user_agent
)
GROUP BY key_id, client_id, caller_ip, caller_ua`

// selectKeyUsed tells whether a key was ever seen in traffic (key_usage holds one row per key).
const selectKeyUsed = `SELECT count() FROM key_usage WHERE key_id = ?`

// Lingering finds callers that still use a key being retired, and answers whether a key is safe
// to retire (Readiness).
type Lingering struct {
	conn driver.Conn
	cfg  config.Lingering
}

// NewLingering returns the detector.
func NewLingering(conn driver.Conn, cfg config.Lingering) *Lingering {
	return &Lingering{conn: conn, cfg: cfg}
}

// Name is the detector's name in findings, metrics and config.
func (d *Lingering) Name() string { return "lingering" }

// Readiness answers whether keyID can be retired (or, once retired, whether anything still calls
// it) as of now. Its JSON is the HTTP response body and `keywatch readiness --format json` output.
type Readiness struct {
	KeyID      string     `json:"key_id"`
	Safe       bool       `json:"safe"`
	Reason     string     `json:"reason"` // one line: why safe or unsafe
	State      string     `json:"state"`  // rotation.State, "unknown" when the key has no lifecycle events
	RotationID string     `json:"rotation_id,omitempty"`
	NewKeyID   string     `json:"new_key_id,omitempty"`
	Deadline   *time.Time `json:"deadline,omitempty"`
	Remaining  []Caller   `json:"remaining"` // never null; at most maxListedCallers (50), clients first
	// Unlisted is how many more callers remain than Remaining lists.
	Unlisted  int       `json:"unlisted,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// Caller is a client, or an (IP, user agent) pair when the client is unknown, and its traffic
// with a key since the rotation started; once the rotation finished, since it finished (use after
// retirement is what matters then, and it keeps the rows read bounded by AfterRetired); for a key
// no rotation retires, within the lookback.
type Caller struct {
	ClientID  string `json:"client_id,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	Requests  uint64 `json:"requests"`
	// Failures are the requests the gateway refused (any outcome but ok), e.g. after retirement.
	Failures       uint64     `json:"failures"`
	FirstSeen      time.Time  `json:"first_seen"`
	LastSeen       time.Time  `json:"last_seen"`
	NewKeyRequests uint64     `json:"new_key_requests"`
	NewKeyShare    float64    `json:"new_key_share"` // new / (old + new), 0..1
	NewKeyLastSeen *time.Time `json:"new_key_last_seen,omitempty"`
	// TopIPs and TopUserAgents are a client's busiest addresses and user agents with the key (at
	// most 5 each); for the callers without a client that one finding sums, theirs.
	TopIPs        []Count `json:"top_ips,omitempty"`
	TopUserAgents []Count `json:"top_user_agents,omitempty"`
}

// name is how people read the caller: its client, or "IP (user agent)".
func (c Caller) name() string {
	if c.ClientID != "" {
		return c.ClientID
	}
	return c.IP + " (" + c.UserAgent + ")"
}

// Count is a value and its number of requests.
type Count struct {
	Value    string `json:"value"`
	Requests uint64 `json:"requests"`
}

// LingeringEvidence is what a lingering finding tells the person on call.
type LingeringEvidence struct {
	RotationID string     `json:"rotation_id"`
	OldKeyID   string     `json:"old_key_id"`
	NewKeyID   string     `json:"new_key_id"`
	Step       string     `json:"step"` // started, retired or revoked
	Started    time.Time  `json:"started"`
	Since      time.Time  `json:"since"` // the caller's counts cover since then: started, or finished
	Deadline   *time.Time `json:"deadline,omitempty"`
	TimeLeft   string     `json:"time_left,omitempty"` // until the deadline, negative once it passed
	Finished   *time.Time `json:"finished,omitempty"`  // when the old key was retired or revoked
	// Caller is the client the finding is about or, for the finding about the callers without a
	// client, the one of them there is, or, when there are several, their sum: no client, IP nor
	// user agent, their traffic added up, and their busiest addresses and user agents.
	Caller Caller `json:"caller"`
	// Callers, Addresses and UserAgents are, in the finding about the callers without a client,
	// how many (IP, user agent) pairs it stands for and how many distinct addresses and user agents
	// they used; 0 in a client's finding.
	Callers    int `json:"callers,omitempty"`
	Addresses  int `json:"addresses,omitempty"`
	UserAgents int `json:"user_agents,omitempty"`
	// FoldedFindings is, in a finding the engine folded others into, how many it stands for
	// (MaxFindingsPerKey, MaxFindingsPerRun); the rest of the evidence is the first one's.
	FoldedFindings int `json:"folded_findings,omitempty"`
}

// callerID identifies a caller: client_id, or ip and ua when the client is unknown.
type callerID struct{ client, ip, ua string }

// usage is each key's callers with their traffic since the key's window start.
type usage map[string]map[callerID]*Caller

// Detect reports, for every rotation whose deadline is within InfoBefore (or passed) and every
// rotation finished within AfterRetired, each client that still depends on the old key (see
// remaining), and in one finding the callers without a client that do (see unidentified).
// Severity follows the deadline: within CriticalBefore or passed critical, within WarningBefore
// warning, within InfoBefore info; any use of the old key after it was retired or revoked is
// critical. Rotations without a deadline are left to Readiness.
func (d *Lingering) Detect(ctx context.Context, now time.Time) ([]finding.Finding, error) {
	m, err := rotation.Load(ctx, d.conn)
	if err != nil {
		return nil, err
	}
	var watched []*rotation.Rotation
	for _, k := range m.SortedKeys() {
		if r := k.Rotation; r != nil && d.watched(r, now) {
			watched = append(watched, r)
		}
	}
	if len(watched) == 0 {
		return nil, nil
	}
	u, err := d.callers(ctx, windows(watched))
	if err != nil {
		return nil, err
	}
	var out []finding.Finding
	for _, r := range watched {
		var anonymous []Caller
		for _, c := range d.remaining(r, now, u) {
			if c.ClientID == "" {
				anonymous = append(anonymous, c)
				continue
			}
			out = append(out, d.finding(r, c, c.name(), false, now))
		}
		if len(anonymous) > 0 {
			out = append(out, d.unidentified(r, anonymous, now))
		}
	}
	return out, nil
}

// watched reports whether r can produce findings as of now.
func (d *Lingering) watched(r *rotation.Rotation, now time.Time) bool {
	if !r.Running() {
		return now.Sub(r.Finished) <= time.Duration(d.cfg.AfterRetired)
	}
	return !r.Deadline.IsZero() && r.Deadline.Sub(now) <= time.Duration(d.cfg.InfoBefore)
}

// windows returns where each key's traffic is read from: since(r) of the rotations it is in.
// A key that is the new key of one watched rotation and the old key of another (a chain) is read
// from the window of the one retiring it, so its counts as the old key are right; its share as
// the new key of the earlier rotation then covers only the later one's window.
func windows(rs []*rotation.Rotation) map[string]time.Time {
	from := map[string]time.Time{}
	for _, r := range rs {
		if t, ok := from[r.NewKeyID]; !ok || since(r).Before(t) {
			from[r.NewKeyID] = since(r)
		}
	}
	for _, r := range rs {
		from[r.OldKeyID] = since(r)
	}
	return from
}

// since is where r's traffic is looked at from: its start while it runs, then its end.
func since(r *rotation.Rotation) time.Time {
	if r.Running() {
		return r.Started
	}
	return r.Finished
}

// callers reads the callers of each key of from since its window start, in one query.
func (d *Lingering) callers(ctx context.Context, from map[string]time.Time) (usage, error) {
	keys := make([]string, 0, len(from))
	starts := make([]int64, 0, len(from))
	earliest := int64(math.MaxInt64)
	for k, t := range from {
		keys = append(keys, k)
		starts = append(starts, t.Unix())
		earliest = min(earliest, t.Unix())
	}
	rows, err := d.conn.Query(ctx, selectCallers, keys, earliest, keys, starts)
	if err != nil {
		return nil, fmt.Errorf("read callers of %d keys from key_callers_1h: %w", len(keys), err)
	}
	defer rows.Close()
	u := usage{}
	for rows.Next() {
		var key string
		var c Caller
		var ipNames, uaNames []string
		var ipCounts, uaCounts []uint64
		if err := rows.Scan(&key, &c.ClientID, &c.IP, &c.UserAgent, &c.Requests, &c.Failures, &c.FirstSeen, &c.LastSeen,
			&ipNames, &ipCounts, &uaNames, &uaCounts); err != nil {
			return nil, fmt.Errorf("read callers from key_callers_1h: %w", err)
		}
		c.FirstSeen, c.LastSeen = c.FirstSeen.UTC(), c.LastSeen.UTC()
		if c.ClientID != "" {
			c.TopIPs, c.TopUserAgents = counts(ipNames, ipCounts), counts(uaNames, uaCounts)
		}
		if u[key] == nil {
			u[key] = map[callerID]*Caller{}
		}
		u[key][callerID{c.ClientID, c.IP, c.UserAgent}] = &c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read callers from key_callers_1h: %w", err)
	}
	return u, nil
}

func counts(values []string, n []uint64) []Count {
	out := make([]Count, len(values))
	for i, v := range values {
		out[i] = Count{v, n[i]}
	}
	return out
}

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

// Readiness answers whether keyID can be retired (or, once retired, whether anything still calls
// it) as of now. A key a rotation retires is safe when no caller remains (see remaining); a key
// no rotation retires is safe when nothing called it within noRotationLookback (since it was
// retired or revoked, for such a key). A key that neither lifecycle events nor traffic know is
// an ErrUnknownKey error.
func (d *Lingering) Readiness(ctx context.Context, now time.Time, keyID string) (Readiness, error) {
	m, err := rotation.Load(ctx, d.conn)
	if err != nil {
		return Readiness{}, fmt.Errorf("detect: readiness of %s: %w", keyID, err)
	}
	return d.ReadinessIn(ctx, m, now, keyID)
}

// ReadinessIn is Readiness with the rotation model m already read, for callers that ask about
// many keys at once (the rotation digest).
func (d *Lingering) ReadinessIn(ctx context.Context, m *rotation.Model, now time.Time, keyID string) (Readiness, error) {
	rep, err := d.readiness(ctx, m, now, keyID)
	if err != nil {
		return Readiness{}, fmt.Errorf("detect: readiness of %s: %w", keyID, err)
	}
	return rep, nil
}

func (d *Lingering) readiness(ctx context.Context, m *rotation.Model, now time.Time, keyID string) (Readiness, error) {
	rep := Readiness{KeyID: keyID, State: "unknown", Remaining: []Caller{}, CheckedAt: now}
	k := m.Key(keyID)
	if k != nil {
		rep.State = string(k.State)
	}
	if k != nil && k.Rotation != nil {
		r := k.Rotation
		rep.RotationID, rep.NewKeyID = r.ID, r.NewKeyID
		if !r.Deadline.IsZero() {
			deadline := r.Deadline
			rep.Deadline = &deadline
		}
		u, err := d.callers(ctx, windows([]*rotation.Rotation{r}))
		if err != nil {
			return Readiness{}, err
		}
		remaining := d.remaining(r, now, u)
		rep.Remaining, rep.Unlisted = listed(remaining, maxListedCallers)
		rep.Safe = len(remaining) == 0
		switch {
		case r.Running() && rep.Safe:
			rep.Reason = fmt.Sprintf("every caller of %s since the rotation started has moved to %s and not used %s for %s",
				keyID, r.NewKeyID, keyID, time.Duration(d.cfg.QuietFor))
		case r.Running():
			rep.Reason = fmt.Sprintf("%s is still used by %s not yet on %s", keyID, callersPhrase(remaining, now), r.NewKeyID)
		case rep.Safe:
			rep.Reason = fmt.Sprintf("%s was %s %s ago and no caller depends on it since", keyID, step(r), Span(now.Sub(r.Finished)))
		default:
			rep.Reason = fmt.Sprintf("%s was %s %s ago but is still used by %s", keyID, step(r), Span(now.Sub(r.Finished)), callersPhrase(remaining, now))
		}
		return rep, nil
	}

	// No rotation retires the key: anything that called it lately depends on it.
	from, within := now.Add(-noRotationLookback), "in the last "+Span(noRotationLookback)
	if k != nil && (k.State == rotation.Retired || k.State == rotation.Revoked) {
		from, within = k.Updated, fmt.Sprintf("since it was %s %s ago", k.State, Span(now.Sub(k.Updated)))
	}
	u, err := d.callers(ctx, map[string]time.Time{keyID: from})
	if err != nil {
		return Readiness{}, err
	}
	remaining := []Caller{}
	for _, c := range u[keyID] {
		if !c.LastSeen.Before(from) {
			remaining = append(remaining, *c)
		}
	}
	sortCallers(remaining)
	rep.Remaining, rep.Unlisted = listed(remaining, maxListedCallers)
	if k == nil && len(remaining) == 0 {
		var n uint64
		if err := d.conn.QueryRow(ctx, selectKeyUsed, keyID).Scan(&n); err != nil {
			return Readiness{}, fmt.Errorf("read key_usage: %w", err)
		}
		if n == 0 {
			return Readiness{}, ErrUnknownKey
		}
	}
	rep.Safe = len(remaining) == 0
	if rep.Safe {
		rep.Reason = fmt.Sprintf("no rotation retires %s and nothing called it %s", keyID, within)
	} else {
		rep.Reason = fmt.Sprintf("no rotation started, and %s is used by %s %s", keyID, callersPhrase(remaining, now), within)
	}
	return rep, nil
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
