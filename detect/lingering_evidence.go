package detect

import (
	"fmt"
	"strings"
	"time"

	"github.com/keywatch/keywatch/finding"
)

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
	// LastOK is the caller's last successful request (outcome ok) with the key in the window; nil
	// when every request was refused.
	LastOK *time.Time `json:"last_ok,omitempty"`
	// SubCallers is, for a client, how many of its (IP, user agent) pairs still depend on the key
	// (see remaining), and StillOn the latest maxListedSubCallers of them; RefusedSubCallers how
	// many of its pairs were only refused in the window (not blockers).
	SubCallers        int         `json:"sub_callers,omitempty"`
	StillOn           []SubCaller `json:"still_on,omitempty"`
	RefusedSubCallers int         `json:"refused_sub_callers,omitempty"`
	// Cadence and QuietNeeded are, for a caller without a client, what SubCaller says of it.
	Cadence     string `json:"cadence,omitempty"`
	QuietNeeded string `json:"quiet_needed,omitempty"`
}

// SubCaller is one (IP, user agent) pair of a client's, or the one of a caller without a client,
// that still depends on a key: its traffic with the key in the window, and the judgement of its
// quiet (see remaining).
type SubCaller struct {
	IP        string    `json:"ip"`
	UserAgent string    `json:"user_agent"`
	Requests  uint64    `json:"requests"`
	Failures  uint64    `json:"failures"`
	LastSeen  time.Time `json:"last_seen"`
	LastOK    time.Time `json:"last_ok"`
	// SuccessorLastOK is its last successful request with a later key of the rotation's chain,
	// nil when none.
	SuccessorLastOK *time.Time `json:"successor_last_ok,omitempty"`
	// Cadence is the rhythm learned from its history ("hourly or more often", "about daily",
	// "about every 6h", "rarely (...)"), "" for a caller that succeeded within quiet_for (it depends
	// on the key whatever its rhythm, which is then not read); QuietNeeded how long it must not
	// succeed with the key to count as gone from it, QuietSoFar how long it has not.
	Cadence     string `json:"cadence"`
	QuietNeeded string `json:"quiet_needed"`
	QuietSoFar  string `json:"quiet_so_far"`
}

// name is how people read the pair: "IP (user agent)".
func (s SubCaller) name() string { return s.IP + " (" + s.UserAgent + ")" }

// stillOnText says the pairs still on the key in words: the latest few, and how many more.
func stillOnText(subs []SubCaller, total int) string {
	parts := make([]string, 0, len(subs)+1)
	for _, s := range subs {
		rhythm := ""
		if s.Cadence != "" {
			rhythm = ", runs " + s.Cadence
		}
		parts = append(parts, fmt.Sprintf("%s, last %s%s: quiet %s needed, %s so far",
			s.name(), finding.Stamp(s.LastOK), rhythm, s.QuietNeeded, s.QuietSoFar))
	}
	if more := total - len(subs); more > 0 {
		parts = append(parts, fmt.Sprintf("%d more", more))
	}
	return strings.Join(parts, "; ")
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

// callerID identifies a caller: client_id, or ip and ua when the client is unknown; with ip and
// ua also for a client, one of its sub-callers.
type callerID struct{ client, ip, ua string }

// caller is the caller a sub-caller belongs to: its client, or itself when it has none.
func (id callerID) caller() callerID {
	if id.client != "" {
		return callerID{client: id.client}
	}
	return id
}

// fields says a lingering finding's evidence in words.
func (e LingeringEvidence) fields() finding.Fields {
	c := e.Caller
	caller := c.ClientID
	if caller == "" {
		caller = strings.TrimSpace(c.IP + " " + c.UserAgent)
	}
	if caller == "" && e.Callers > 0 {
		caller = "callers without a client" // the finding about a rotation's callers without a client sums several
	}
	var l finding.Fields
	l.Add("Rotation", fmt.Sprintf("%s → %s (%s)", e.OldKeyID, e.NewKeyID, e.Step))
	l.Add("Caller", caller)
	if e.Callers > 0 {
		l.Add("Callers without a client", fmt.Sprintf("%d (%d addresses, %d user agents)", e.Callers, e.Addresses, e.UserAgents))
	}
	l.Add("Requests on old key", fmt.Sprintf("%d (%d failed) since %s", c.Requests, c.Failures, finding.Stamp(e.Since)))
	l.Add("First / last seen", finding.Stamp(c.FirstSeen)+" / "+finding.Stamp(c.LastSeen))
	l.Add("On new key", fmt.Sprintf("%.0f%% (%d requests)", 100*c.NewKeyShare, c.NewKeyRequests))
	if e.Deadline != nil {
		l.Add("Deadline", finding.Stamp(*e.Deadline)+" ("+e.TimeLeft+" left)")
	}
	if c.SubCallers > 0 {
		l.Add("Still on the old key", stillOnText(c.StillOn, c.SubCallers))
	}
	if c.Cadence != "" {
		l.Add("Cadence", fmt.Sprintf("runs %s; quiet %s needed", c.Cadence, c.QuietNeeded))
	}
	if c.RefusedSubCallers > 0 {
		l.Add("Refused only", fmt.Sprintf("%d of its addresses and user agents, every request refused since %s (not use)", c.RefusedSubCallers, finding.Stamp(e.Since)))
	}
	l.Add("Top addresses", countsText(c.TopIPs))
	l.Add("Top user agents", countsText(c.TopUserAgents))
	return l
}
