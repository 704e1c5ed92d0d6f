package detect

import (
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// TestLingeringQuietNeeded: the quiet a caller needs follows the gap between its active hours
// that recurs, at least quiet_for, and at most the grace period for a caller seen on a later key;
// without a known rhythm, quiet_for for a caller seen on a later key since, the lookback (at most
// the grace period) for one that was not.
func TestLingeringQuietNeeded(t *testing.T) {
	d := NewLingering(nil, config.Default().Detect.Lingering)
	const h, day = time.Hour, 24 * time.Hour
	rot := &rotation.Rotation{Started: now.Add(-2 * day), Deadline: now.Add(3 * day)} // 5 days of grace
	noDeadline := &rotation.Rotation{Started: now.Add(-2 * day)}
	cases := []struct {
		name   string
		r      *rotation.Rotation
		c      cadence
		moved  bool
		need   time.Duration
		rhythm string
	}{
		{"hourly", rot, cadence{ActiveHours: 300, Longest: h, Second: h}, false, 3 * h, "hourly or more often"},
		{"hourly, moved", rot, cadence{ActiveHours: 300, Longest: h, Second: h}, true, h, "hourly or more often"},
		{"an outage once", rot, cadence{ActiveHours: 300, Longest: 3 * day, Second: h}, true, h, "hourly or more often"},
		{"every other hour", rot, cadence{ActiveHours: 300, Longest: 2 * h, Second: 2 * h}, false, 3 * h, "about every 2h"},
		{"business hours", rot, cadence{ActiveHours: 200, Longest: 63 * h, Second: 63 * h}, false, 94*h + 30*time.Minute, "about every 2d15h"},
		{"daily", rot, cadence{ActiveHours: 30, Longest: 25 * h, Second: day}, true, 36 * h, "about daily"},
		{"weekly, not on a later key: its rhythm, past the grace period", rot, cadence{ActiveHours: 5, Longest: 7 * day, Second: 7 * day}, false, 10*day + 12*h, "about weekly"},
		{"weekly, on a later key: bounded by the grace period", rot, cadence{ActiveHours: 5, Longest: 7 * day, Second: 7 * day}, true, 5 * day, "about weekly"},
		{"two runs", noDeadline, cadence{ActiveHours: 2, Longest: 10 * day}, false, 15 * day, "about every 10d"},
		{"unknown, moved", rot, cadence{ActiveHours: 1}, true, h, "rarely (active in 1 hour of the last 30d)"},
		{"unknown, not moved", rot, cadence{}, false, 5 * day, "rarely (active in 0 hours of the last 30d)"},
		{"unknown, not moved, no deadline", noDeadline, cadence{}, false, 30 * day, "rarely (active in 0 hours of the last 30d)"},
	}
	for _, c := range cases {
		if got := d.quietNeeded(c.r, c.c, c.moved); got != c.need {
			t.Errorf("%s: quiet needed %s, want %s", c.name, got, c.need)
		}
		if got := c.c.text(30 * day); got != c.rhythm {
			t.Errorf("%s: rhythm %q, want %q", c.name, got, c.rhythm)
		}
	}
}

// TestLingeringTwoLevels: a client remains while any of its pairs still depends on the key, and
// is listed as refused only when every request of every pair since the step was refused; a pair
// refused beside one still on the key is counted, not listed.
func TestLingeringTwoLevels(t *testing.T) {
	d := NewLingering(nil, config.Default().Detect.Lingering)
	rot := &rotation.Rotation{ID: "a>b", OldKeyID: "a", NewKeyID: "b", Started: now.Add(-48 * time.Hour), Deadline: now.Add(24 * time.Hour)}
	use := func(last time.Duration, ok bool) subUse {
		u := subUse{Requests: 10, FirstSeen: now.Add(-40 * time.Hour), LastSeen: now.Add(-last)}
		if ok {
			u.LastOK = u.LastSeen
		} else {
			u.Failures = 10
			u.LastOK = now.Add(-50 * time.Hour) // before the rotation started
		}
		return u
	}
	hourly := cadence{ActiveHours: 40, Longest: time.Hour, Second: time.Hour}
	pair := func(client, ip string) callerID { return callerID{client, ip, "ua"} }
	old := map[callerID]subUse{
		pair("api", "10.0.0.1"):  use(3*time.Hour, true),    // moved, quiet long enough
		pair("api", "10.0.0.2"):  use(20*time.Minute, true), // still on it
		pair("api", "10.0.0.3"):  use(time.Hour, false),     // refused only
		pair("gone", "10.0.1.1"): use(time.Hour, false),     // refused only: the whole client
		pair("", "203.0.113.9"):  use(time.Hour, false),     // refused only, without a client
		pair("", "203.0.113.10"): use(10*time.Minute, true),
	}
	next := map[callerID]subUse{pair("api", "10.0.0.1"): use(time.Minute, true)}
	cad := map[callerID]cadence{}
	for id := range old {
		cad[id] = hourly
	}
	j := d.remaining(rot, now, old, next, map[callerID]subUse{{client: "api"}: next[pair("api", "10.0.0.1")]}, cad)
	if len(j.remaining) != 2 || j.remaining[0].IP != "203.0.113.10" || j.remaining[1].ClientID != "api" {
		t.Fatalf("remaining %+v, want 203.0.113.10 then api", j.remaining)
	}
	api := j.remaining[1]
	if api.SubCallers != 1 || api.StillOn[0].IP != "10.0.0.2" || api.RefusedSubCallers != 1 || api.Requests != 30 || api.NewKeyRequests != 10 {
		t.Errorf("api %+v: want 10.0.0.2 still on it, one refused pair, 30 requests on the old key, 10 on the new", api)
	}
	if len(j.refused) != 2 || j.refused[0].ClientID != "" || j.refused[1].ClientID != "gone" {
		t.Errorf("refused %+v, want 203.0.113.9 and gone", j.refused)
	}
}
