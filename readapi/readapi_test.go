package readapi

import (
	"context"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// rotationScenario stores one rotation, kid_old → kid_new of client acme, started 72 hours before
// now (hourly burn-down), and its traffic: billing still calls the old key every hour, web moved
// to the new key an hour after the start, and an unidentified curl called the old key three
// times (one refused).
type rotationScenario struct {
	*env
	h0, started, deadline time.Time
}

func newRotationScenario(t *testing.T) *rotationScenario {
	// Times relative to the clock, so that the rollups' TTL never drops the rows.
	now := time.Now().UTC().Truncate(time.Hour).Add(30 * time.Minute)
	e := newEnv(t, now)
	s := &rotationScenario{env: e, h0: now.Truncate(time.Hour)}
	s.started, s.deadline = s.h0.Add(-72*time.Hour), s.h0.Add(96*time.Hour)
	e.lifecycle(
		rotation.Event{TS: s.started.Add(-60 * 24 * time.Hour), Type: rotation.KeyCreated, KeyID: "kid_old", ClientID: "acme", Version: "3", Scopes: []string{"prices:read"}},
		rotation.Event{TS: s.started, Type: rotation.KeyRotationStarted, KeyID: "kid_old", ClientID: "acme", NewKeyID: "kid_new", GraceUntil: s.deadline, Reason: "scheduled rotation"},
	)
	billing := event{ClientID: "billing", IP: "198.51.100.10", ASN: 64500, Country: "DE"}
	web := event{ClientID: "web", IP: "203.0.113.5", ASN: 64501, Country: "US"}
	var evs []event
	evs = append(evs, hourly(billing, "kid_old", s.started.Add(-48*time.Hour), s.h0)...)                 // 121
	evs = append(evs, hourly(web, "kid_old", s.started.Add(-48*time.Hour), s.started.Add(time.Hour))...) // 50
	evs = append(evs, hourly(web, "kid_new", s.started, s.h0)...)                                        // 73
	curl := event{KeyID: "kid_old", IP: "192.0.2.7", UA: "curl/8.5"}
	for i, outcome := range []string{"ok", "ok", "invalid_key"} {
		ev := curl
		ev.TS, ev.Outcome = s.started.Add(2*time.Hour+time.Duration(i)*time.Minute), outcome
		evs = append(evs, ev)
	}
	e.events(evs)
	return s
}

func u64(n uint64) *uint64      { return &n }
func f64(f float64) *float64    { return &f }
func tp(t time.Time) *time.Time { return &t }

// TestKeyAnswersFromStoredTraffic: GET /v1/keys/{id} of a key being retired says its state and
// rotation, its use, each caller's share on the new key, its networks and countries, exactly.
func TestKeyAnswersFromStoredTraffic(t *testing.T) {
	s := newRotationScenario(t)
	var k Key
	if code, body := s.get("/v1/keys/kid_old", &k); code != 200 {
		t.Fatalf("GET /v1/keys/kid_old: %d %s", code, body)
	}
	rot := Rotation{ID: "kid_old>kid_new", ClientID: "acme", OldKeyID: "kid_old", NewKeyID: "kid_new", State: "running",
		Started: s.started, Deadline: tp(s.deadline), Reason: "scheduled rotation"}
	first, last := s.started.Add(-48*time.Hour+10*time.Minute), s.h0.Add(10*time.Minute)
	want := Key{
		KeyID: "kid_old", ClientID: "acme", State: "retiring", Created: tp(s.started.Add(-60 * 24 * time.Hour)), Updated: tp(s.started),
		Version: "3", Scopes: []string{"prices:read"}, Rotation: &rot,
		LastUse: LastUse{Requests: 121 + 50 + 3, FirstSeen: &first, LastSeen: &last, LastSuccess: &last},
		Window:  Window{From: s.now.Add(-30 * 24 * time.Hour), To: s.now, Days: 30},
		Callers: []Caller{
			{ClientID: "billing", Requests: 121, LastSeen: last, LastSuccess: &last, NewKeyRequests: u64(0), NewKeyShare: f64(0)},
			{ClientID: "web", Requests: 50, LastSeen: s.started.Add(time.Hour + 10*time.Minute), LastSuccess: tp(s.started.Add(time.Hour + 10*time.Minute)),
				NewKeyRequests: u64(73), NewKeyShare: f64(0.5935)}, // 73 / 123
			{IP: "192.0.2.7", UserAgent: "curl/8.5", Requests: 3, Failures: 1, LastSeen: s.started.Add(2*time.Hour + 2*time.Minute),
				LastSuccess: tp(s.started.Add(2*time.Hour + time.Minute)), NewKeyRequests: u64(0), NewKeyShare: f64(0)},
		},
		Networks: []Network{
			{Network: "AS64500", ASN: 64500, ASOrg: "Org 64500", Requests: 121, LastSeen: last},
			{Network: "AS64501", ASN: 64501, ASOrg: "Org 64501", Requests: 50, LastSeen: s.started.Add(time.Hour + 10*time.Minute)},
			{Network: "192.0.2.0/24", Requests: 3, Failures: 1, LastSeen: s.started.Add(2*time.Hour + 2*time.Minute)},
		},
		Countries: []Country{{"DE", 121}, {"US", 50}},
	}
	if !reflect.DeepEqual(k, want) {
		t.Errorf("GET /v1/keys/kid_old:\n got %+v\nwant %+v", k, want)
	}

	// The new key: introduced by the rotation, its callers without a share (no rotation retires it).
	var nk Key
	if code, body := s.get("/v1/keys/kid_new", &nk); code != 200 {
		t.Fatalf("GET /v1/keys/kid_new: %d %s", code, body)
	}
	if nk.State != "active" || nk.Rotation != nil || nk.Predecessor == nil || nk.Predecessor.ID != "kid_old>kid_new" ||
		len(nk.Callers) != 1 || nk.Callers[0].ClientID != "web" || nk.Callers[0].Requests != 73 || nk.Callers[0].NewKeyShare != nil {
		t.Errorf("GET /v1/keys/kid_new: %+v", nk)
	}
	if code, body := s.get("/v1/keys/kid_nobody", nil); code != 404 || !strings.Contains(body, "kid_nobody") {
		t.Errorf("an unknown key: %d %s, want 404 naming it", code, body)
	}
	if code, body := s.get("/v1/keys/kid_old?window=7d", nil); code != 400 || !strings.Contains(body, "window") {
		t.Errorf("an unknown parameter: %d %s, want 400 naming it", code, body)
	}
}

// TestRotationAnswersBurnDownStragglersAndReadiness: GET /v1/rotations/{id} gives each client's
// burn-down per hour, the stragglers and verdict of the old key's readiness.
func TestRotationAnswersBurnDownStragglersAndReadiness(t *testing.T) {
	s := newRotationScenario(t)
	var r RotationDetail
	if code, body := s.get("/v1/rotations/"+url.PathEscape("kid_old>kid_new"), &r); code != 200 {
		t.Fatalf("GET /v1/rotations/kid_old>kid_new: %d %s", code, body)
	}
	if r.ID != "kid_old>kid_new" || r.State != "running" || r.Overdue || !r.Deadline.Equal(s.deadline) || !r.Started.Equal(s.started) {
		t.Errorf("rotation %+v", r.Rotation)
	}
	bd := r.BurnDown
	if bd.Step != "hour" || !bd.From.Equal(s.started) || !bd.To.Equal(s.now) || bd.ClientsTruncated {
		t.Errorf("burn-down step %s from %s to %s truncated %v", bd.Step, bd.From, bd.To, bd.ClientsTruncated)
	}
	var clients []string
	for _, c := range bd.Clients {
		clients = append(clients, fmt.Sprintf("%s %d/%d %.4f %d", c.ClientID, c.OldRequests, c.NewRequests, c.NewKeyShare, len(c.Points)))
	}
	// Since the start: web 2 old and 73 new, billing 73 old, curl 3 old; busiest first.
	want := []string{"web 2/73 0.9733 73", "billing 73/0 0.0000 73", " 3/0 0.0000 1"}
	if !slices.Equal(clients, want) {
		t.Fatalf("burn-down clients %q, want %q", clients, want)
	}
	web := bd.Clients[0].Points
	wantWeb := []BurnDownPoint{
		{At: s.started, OldRequests: 1, NewRequests: 1, NewKeyShare: 0.5},
		{At: s.started.Add(time.Hour), OldRequests: 1, NewRequests: 1, NewKeyShare: 0.5},
		{At: s.started.Add(2 * time.Hour), NewRequests: 1, NewKeyShare: 1},
	}
	if !reflect.DeepEqual(web[:3], wantWeb) || !web[72].At.Equal(s.h0) {
		t.Errorf("web's burn-down starts %+v, ends %+v; want %+v … at %s", web[:3], web[72], wantWeb, s.h0)
	}

	// Stragglers and verdict are the readiness answer's.
	rep, err := detect.NewLingering(s.conn, config.Default().Detect.Lingering).Readiness(context.Background(), s.now, "kid_old")
	if err != nil {
		t.Fatal(err)
	}
	if r.Readiness == nil || r.Readiness.Verdict != "unsafe" || r.Readiness.Safe || r.Readiness.Reason != rep.Reason ||
		!reflect.DeepEqual(r.Stragglers, rep.Remaining) || r.StragglersUnlisted != rep.Unlisted {
		t.Errorf("readiness %+v with stragglers %+v, want the readiness answer %+v", r.Readiness, r.Stragglers, rep)
	}
	var stragglers []string
	for _, c := range r.Stragglers {
		stragglers = append(stragglers, c.ClientID+c.IP)
	}
	if !slices.Contains(stragglers, "billing") || slices.Contains(stragglers, "web") {
		t.Errorf("stragglers %q: want billing, not web", stragglers)
	}

	for path, wantCode := range map[string]int{
		"/v1/rotations/" + url.PathEscape("kid_old>kid_other"): 404,
		"/v1/rotations/kid_old":                                400,
		"/v1/rotations/" + url.PathEscape(">kid_new"):          400,
		"/v1/rotations/" + url.PathEscape("kid\x1b[31m>kid"):   400,
	} {
		if code, body := s.get(path, nil); code != wantCode {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, wantCode)
		}
	}
}

// TestRotationsPageWithoutLossOrDuplication: the list holds the running rotations and those
// finished within 30 days, latest started first, and pages of any size give each once.
func TestRotationsPageWithoutLossOrDuplication(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Minute)
	e := newEnv(t, now)
	var want []string
	for i := range 9 {
		old, nw := fmt.Sprintf("kid_%d_a", i), fmt.Sprintf("kid_%d_b", i)
		started := now.Add(-time.Duration(60-i*5) * 24 * time.Hour)
		if i == 4 || i == 5 {
			started = now.Add(-33 * 24 * time.Hour) // the same start: by id
		}
		e.lifecycle(rotation.Event{TS: started, Type: rotation.KeyRotationStarted, KeyID: old, NewKeyID: nw, ClientID: "c"})
		switch i {
		case 0, 1: // retired 40 days ago: not listed
			e.lifecycle(rotation.Event{TS: now.Add(-40 * 24 * time.Hour), Type: rotation.KeyRetired, KeyID: old})
			continue
		case 2:
			e.lifecycle(rotation.Event{TS: now.Add(-3 * 24 * time.Hour), Type: rotation.KeyRevoked, KeyID: old})
		}
		want = append(want, old+">"+nw)
	}
	slices.Reverse(want) // latest started first; 4 and 5 share a start and sort by id
	want[3], want[4] = want[4], want[3]
	for _, limit := range []int{1, 2, 3, 7, 50} {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("limit %d: more than 10 pages", limit)
			}
			var page Rotations
			path := fmt.Sprintf("/v1/rotations?limit=%d", limit)
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			if code, body := e.get(path, &page); code != 200 {
				t.Fatalf("GET %s: %d %s", path, code, body)
			}
			if len(page.Rotations) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(page.Rotations))
			}
			for _, r := range page.Rotations {
				got = append(got, r.ID)
				if r.ID == "kid_2_a>kid_2_b" && (r.State != "revoked" || r.Finished == nil) {
					t.Errorf("revoked rotation listed as %+v", r)
				}
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: pages gave %q, want %q", limit, got, want)
		}
	}
	for _, q := range []string{"limit=0", "limit=501", "limit=x", "cursor=%21%21", "cursor=" + encodeCursor("nonsense"), "limit=2&limit=3", "state=running"} {
		if code, body := e.get("/v1/rotations?"+q, nil); code != 400 || !strings.Contains(body, "error") {
			t.Errorf("GET /v1/rotations?%s: %d %s, want 400", q, code, body)
		}
	}
}

// alertScenario stores findings of three detectors on several keys and evaluates them: spike's
// alerts wait an hour before firing (pending), the others fire, hygiene's resolve.
func alertScenario(t *testing.T) (*env, []alerting.Alert) {
	now := time.Now().UTC().Truncate(time.Second)
	e := newEnv(t, now)
	store := finding.NewStore(e.conn)
	cfg := config.Default().Alerting
	cfg.GroupWait, cfg.Inhibit = 0, nil
	cfg.For = map[string]config.Duration{"default": 0, "spike": config.Duration(time.Hour)}
	cfg.ResolveAfter = map[string]config.Duration{"default": 0}
	ev := alerting.New(e.conn, cfg, config.Slack{DefaultChannel: "#k"}, nopNotifier{}, nil, nil, nil)
	run := func(detector string, at time.Time, fs ...finding.Finding) {
		r := finding.Run{ID: detector + at.Format("150405"), Detector: detector, Started: at, Finished: at.Add(time.Second)}
		for _, f := range fs {
			f.DetectedAt = at
			r.Findings = append(r.Findings, f)
		}
		if err := store.StoreRun(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(detector, key string, sev finding.Severity) finding.Finding {
		return finding.Finding{Detector: detector, Fingerprint: finding.Fingerprint(detector, key, "acme", ""), Severity: sev, Score: 1,
			KeyID: key, ClientID: "acme", Summary: detector + " on " + key, Evidence: map[string]any{}}
	}
	t1, t2 := now.Add(-10*time.Minute), now.Add(-5*time.Minute)
	var ling, spike []finding.Finding
	for i := range 5 {
		ling = append(ling, mk("lingering", fmt.Sprintf("kid_%d", i), finding.Warning))
		spike = append(spike, mk("spike", fmt.Sprintf("kid_%d", i%2), finding.Critical))
	}
	run("lingering", t1, ling...)
	run("spike", t1, spike[:2]...)
	run("hygiene", t1, mk("hygiene", "kid_0", finding.Info), mk("hygiene", "kid_9", finding.Info))
	if err := ev.Evaluate(context.Background(), t1.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	run("lingering", t2, ling...)
	run("spike", t2, spike[:2]...)
	run("hygiene", t2) // found nothing: hygiene's alerts resolve
	if err := ev.Evaluate(context.Background(), t2.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	all, err := alerting.NewReader(e.conn).List(context.Background(), alerting.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return e, all
}

type nopNotifier struct{}

func (nopNotifier) Notify(context.Context, alerting.Notification) error { return nil }

// TestAlertsFilterAndPage: GET /v1/alerts filters by state, detector and key, and pages of any
// size give every selected alert once, in the order of their fingerprints.
func TestAlertsFilterAndPage(t *testing.T) {
	e, all := alertScenario(t)
	states := map[string]string{}
	for _, a := range all {
		states[a.Detector+" "+a.KeyID] = string(a.State)
	}
	wantStates := map[string]string{"spike kid_0": "pending", "spike kid_1": "pending", "hygiene kid_0": "resolved", "hygiene kid_9": "resolved"}
	for i := range 5 {
		wantStates[fmt.Sprintf("lingering kid_%d", i)] = "firing"
	}
	if !reflect.DeepEqual(states, wantStates) {
		t.Fatalf("stored alerts %v, want %v", states, wantStates)
	}
	selected := func(state, detector, key string) []string {
		var out []string
		for _, a := range all {
			if (state == "" || strings.Contains(state, string(a.State))) && (detector == "" || a.Detector == detector) && (key == "" || a.KeyID == key) {
				out = append(out, a.Fingerprint)
			}
		}
		slices.Sort(out)
		return out
	}
	cases := []struct{ state, detector, key string }{
		{"", "", ""}, {"firing", "", ""}, {"pending,resolved", "", ""}, {"", "spike", ""}, {"", "", "kid_0"},
		{"firing", "lingering", "kid_3"}, {"resolved", "lingering", ""},
	}
	for _, c := range cases {
		want := selected(c.state, c.detector, c.key)
		for _, limit := range []int{1, 2, 4, 500} {
			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 20 {
					t.Fatalf("%+v limit %d: more than 20 pages", c, limit)
				}
				q := url.Values{"limit": {fmt.Sprint(limit)}}
				for k, v := range map[string]string{"state": c.state, "detector": c.detector, "key_id": c.key, "cursor": cursor} {
					if v != "" {
						q.Set(k, v)
					}
				}
				var page Alerts
				if code, body := e.get("/v1/alerts?"+q.Encode(), &page); code != 200 {
					t.Fatalf("GET /v1/alerts?%s: %d %s", q.Encode(), code, body)
				}
				for _, a := range page.Alerts {
					got = append(got, a.Fingerprint)
					if (a.State == "firing") != (a.ID != "" && a.FiredAt != nil) && a.State != "resolved" {
						t.Errorf("alert %+v: an id and fired_at exactly when it fired", a)
					}
				}
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%+v limit %d: %d alerts %q, want %q", c, limit, len(got), got, want)
			}
		}
	}
	for _, q := range []string{"state=open", "detector=Spike!", "key_id=" + url.QueryEscape("kid\x00"), "limit=-1", "sort=state", "cursor=%%"} {
		if code, body := e.get("/v1/alerts?"+q, nil); code != 400 {
			t.Errorf("GET /v1/alerts?%s: %d %s, want 400", q, code, body)
		}
	}
}

// TestBurnDownSpanIsBounded: hourly up to MaxBurnDownPoints hours, then daily over at most
// MaxBurnDownPoints days.
func TestBurnDownSpanIsBounded(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		started  time.Time
		step     time.Duration
		from     time.Time
		maxPoint int
	}{
		{now.Add(-2 * time.Hour), time.Hour, time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), 3},
		{now.Add(-167 * time.Hour), time.Hour, time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC), 168},
		{now.Add(-168 * time.Hour), 24 * time.Hour, time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), 8},
		{now.Add(-400 * 24 * time.Hour), 24 * time.Hour, time.Date(2026, 6, 22, 0, 0, 0, 0, time.UTC), 168},
	} {
		step, from := burnDownSpan(c.started, now)
		points := int(now.Sub(from)/step) + 1
		if step != c.step || !from.Equal(c.from) || points != c.maxPoint {
			t.Errorf("started %s: step %s from %s (%d points), want %s from %s (%d)", c.started, step, from, points, c.step, c.from, c.maxPoint)
		}
	}
}

// TestListsAreBounded: a key called from more callers, networks and countries than an answer
// lists gives the busiest of each and says it cut the rest; a rotation older than a week has a
// daily burn-down.
func TestListsAreBounded(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Hour).Add(30 * time.Minute)
	e := newEnv(t, now)
	started := now.Truncate(24 * time.Hour).Add(-10*24*time.Hour + 6*time.Hour)
	e.lifecycle(rotation.Event{TS: started, Type: rotation.KeyRotationStarted, KeyID: "kid_busy", ClientID: "acme", NewKeyID: "kid_next"})
	var evs []event
	const n = 130
	for i := range n {
		// Caller i calls i+1 times (the busiest last), each from its own /24 and country.
		for j := range i + 1 {
			evs = append(evs, event{TS: now.Add(-time.Duration(j+1) * time.Minute), KeyID: "kid_busy", IP: fmt.Sprintf("10.%d.%d.1", i/200, i%200),
				UA: fmt.Sprintf("ua-%03d", i), Country: fmt.Sprintf("%c%c", 'A'+i/26, 'A'+i%26)})
		}
	}
	for d := range 3 { // billing on the new key on three days
		evs = append(evs, event{TS: started.Add(time.Duration(d+1) * 24 * time.Hour), KeyID: "kid_next", ClientID: "billing"})
	}
	evs = append(evs, event{TS: started.Add(time.Hour), KeyID: "kid_busy", ClientID: "billing"})
	e.events(evs)

	var k Key
	if code, body := e.get("/v1/keys/kid_busy", &k); code != 200 {
		t.Fatalf("GET /v1/keys/kid_busy: %d %s", code, body)
	}
	if len(k.Callers) != MaxCallers || !k.CallersTruncated || k.Callers[0].UserAgent != "ua-129" || k.Callers[0].Requests != n ||
		k.Callers[MaxCallers-1].UserAgent != fmt.Sprintf("ua-%03d", n-MaxCallers) {
		t.Errorf("%d callers (truncated %v), first %+v, last %+v", len(k.Callers), k.CallersTruncated, k.Callers[0], k.Callers[len(k.Callers)-1])
	}
	if len(k.Networks) != MaxNetworks || !k.NetworksTruncated || k.Networks[0].Network != "10.0.129.0/24" || k.Networks[0].Requests != n {
		t.Errorf("%d networks (truncated %v), first %+v", len(k.Networks), k.NetworksTruncated, k.Networks[0])
	}
	if len(k.Countries) != MaxCountries || !k.CountriesTruncated || k.Countries[0] != (Country{"EZ", n}) {
		t.Errorf("%d countries (truncated %v), first %+v", len(k.Countries), k.CountriesTruncated, k.Countries[0])
	}

	var r RotationDetail
	if code, body := e.get("/v1/rotations/"+url.PathEscape("kid_busy>kid_next"), &r); code != 200 {
		t.Fatalf("GET /v1/rotations/kid_busy>kid_next: %d %s", code, body)
	}
	day := started.Truncate(24 * time.Hour)
	i := slices.IndexFunc(r.BurnDown.Clients, func(c ClientBurnDown) bool { return c.ClientID == "billing" })
	if r.BurnDown.Step != "day" || !r.BurnDown.From.Equal(day) || i < 0 {
		t.Fatalf("burn-down %s from %s with clients %+v, want daily from %s with billing", r.BurnDown.Step, r.BurnDown.From, r.BurnDown.Clients, day)
	}
	want := []BurnDownPoint{
		{At: day, OldRequests: 1, NewKeyShare: 0},
		{At: day.Add(24 * time.Hour), NewRequests: 1, NewKeyShare: 1},
		{At: day.Add(48 * time.Hour), NewRequests: 1, NewKeyShare: 1},
		{At: day.Add(72 * time.Hour), NewRequests: 1, NewKeyShare: 1},
	}
	if got := r.BurnDown.Clients[i]; !reflect.DeepEqual(got.Points, want) || got.NewKeyShare != 0.75 {
		t.Errorf("billing's burn-down %+v, want %+v with share 0.75", got, want)
	}
}
