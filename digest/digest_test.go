package digest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schedule"
	"github.com/keywatch/keywatch/rotation"
	"github.com/keywatch/keywatch/webhook"
	"github.com/keywatch/keywatch/webhook/webhooktest"
)

// sectionTexts returns the texts of a message's header, section and context blocks, in order.
func sectionTexts(t *testing.T, blocks string) []string {
	t.Helper()
	var bs []struct {
		Type     string                  `json:"type"`
		Text     *struct{ Text string }  `json:"text"`
		Elements []struct{ Text string } `json:"elements"`
	}
	if err := json.Unmarshal([]byte(blocks), &bs); err != nil {
		t.Fatalf("blocks %q: %v", blocks, err)
	}
	var out []string
	for _, b := range bs {
		if b.Text != nil {
			out = append(out, b.Text.Text)
		}
		for _, e := range b.Elements {
			out = append(out, e.Text)
		}
	}
	return out
}

// wantShare is a client's traffic with a rotation's keys, counted from the events the test wrote.
type wantShare struct{ old, new uint64 }

// TestDigestMatchesStoredTraffic writes two rotations in flight (and one finished) with their
// traffic, then checks every figure of the digest against counts the test makes from the events
// it wrote: per client, requests on each key since the rotation started and the share on the new
// key; the stragglers; the time left; and which channel gets which rotation.
func TestDigestMatchesStoredTraffic(t *testing.T) {
	conn := newDB(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 20, 12, 30, 0, 0, time.UTC)
	acmeStart, acmeDeadline := time.Date(2026, 11, 19, 10, 0, 0, 0, time.UTC), time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	globexStart, globexDeadline := time.Date(2026, 11, 18, 8, 0, 0, 0, time.UTC), time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	rotate(t, conn, "kid_acme_old", "kid_acme_new", "acme-billing", acmeStart, acmeDeadline)
	rotate(t, conn, "kid_globex_old", "kid_globex_new", "globex", globexStart, globexDeadline)
	// A finished rotation is not in flight.
	rotate(t, conn, "kid_done_old", "kid_done_new", "acme-billing", now.Add(-5*24*time.Hour), now.Add(-3*24*time.Hour))
	insertLifecycle(t, conn, rotation.Event{TS: now.Add(-3 * 24 * time.Hour), Type: rotation.KeyRetired, KeyID: "kid_done_old", ClientID: "acme-billing"})

	billing, batch, reports := event{ClientID: "acme-billing"}, event{ClientID: "acme-batch", IP: "198.51.100.20"}, event{ClientID: "acme-reports"}
	curl := event{IP: "203.0.113.7", UA: "curl/8.4"} // no client resolved
	web, cron := event{ClientID: "globex-web"}, event{ClientID: "globex-cron", UA: "cron/1"}
	var evs []event
	add := func(es []event) { evs = append(evs, es...) }
	add(calls("kid_acme_old", billing, acmeStart.Add(-4*time.Hour), acmeStart, 7*time.Minute)) // before the rotation: not counted
	add(calls("kid_acme_old", billing, acmeStart, acmeStart.Add(10*time.Hour), 3*time.Minute))
	add(calls("kid_acme_new", billing, acmeStart.Add(4*time.Hour), now, 2*time.Minute))
	add(calls("kid_acme_old", batch, acmeStart, now, 17*time.Minute)) // straggler
	add(calls("kid_acme_new", curl, acmeStart.Add(time.Hour), now, 29*time.Minute))
	add(calls("kid_acme_old", reports, acmeStart, now.Add(-30*time.Minute), 11*time.Minute)) // moved, but within quiet_for
	add(calls("kid_acme_new", reports, now.Add(-6*time.Hour), now, 13*time.Minute))
	add(calls("kid_globex_old", web, globexStart, globexStart.Add(24*time.Hour), 5*time.Minute))
	add(calls("kid_globex_new", web, globexStart.Add(4*time.Hour), now, 4*time.Minute))
	add(calls("kid_globex_old", cron, globexStart, now, time.Hour)) // straggler
	add(calls("kid_globex_new", cron, globexStart, now, 6*time.Hour))
	add(calls("kid_done_new", billing, now.Add(-5*24*time.Hour), now, time.Hour))
	// Jitter within each call's minute keeps counts irregular without crossing a rotation start.
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range evs {
		evs[i].TS = evs[i].TS.Add(time.Duration(rng.IntN(59_000)) * time.Millisecond)
	}
	insertEvents(t, conn, evs)

	// The test's own count: every event since the rotation started, per client and key.
	type rot struct {
		id, old, new, client string
		start                time.Time
		stragglers           []string
	}
	rots := []rot{
		{"kid_globex_old>kid_globex_new", "kid_globex_old", "kid_globex_new", "globex", globexStart, []string{"globex-cron"}},
		{"kid_acme_old>kid_acme_new", "kid_acme_old", "kid_acme_new", "acme-billing", acmeStart, []string{"acme-batch", "acme-reports"}},
	}
	want := map[string]map[string]*wantShare{}
	for _, r := range rots {
		want[r.id] = map[string]*wantShare{}
		for _, e := range evs {
			if e.TS.Before(r.start) || (e.KeyID != r.old && e.KeyID != r.new) {
				continue
			}
			s := want[r.id][e.ClientID]
			if s == nil {
				s = &wantShare{}
				want[r.id][e.ClientID] = s
			}
			if e.KeyID == r.old {
				s.old++
			} else {
				s.new++
			}
		}
	}

	f := newFakeSlack(t)
	slackCfg := slackConfig(f)
	slackCfg.DefaultChannel = "C_ALL"
	slackCfg.Routes = []config.SlackRoute{
		{Channel: "C_LEAKS", Detector: []string{"leak"}, Client: []string{"acme*"}}, // not about rotations
		{Channel: "C_GLOBEX", Client: []string{"globex*"}},
	}
	in := newInstance(t, conn, config.Default().Digest, slackCfg, func() time.Time { return now })

	rep, err := in.digest.Build(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	// Soonest deadline first: globex (tomorrow 08:00), then acme.
	if len(rep.Rotations) != len(rots) {
		t.Fatalf("rotations in flight: got %d, want %d: %+v", len(rep.Rotations), len(rots), rep.Rotations)
	}
	for i, r := range rots {
		got := rep.Rotations[i]
		if got.ID != r.id || got.ClientID != r.client || !got.Started.Equal(r.start) {
			t.Fatalf("rotation %d: got %s of %s started %s, want %s of %s started %s", i, got.ID, got.ClientID, got.Started, r.id, r.client, r.start)
		}
		var totalOld, totalNew uint64
		for client, w := range want[r.id] {
			totalOld += w.old
			totalNew += w.new
			i := slices.IndexFunc(got.Clients, func(c Client) bool { return c.ClientID == client })
			if i < 0 {
				t.Errorf("%s: client %q missing from %+v", r.id, client, got.Clients)
				continue
			}
			c := got.Clients[i]
			share := float64(w.new) / float64(w.old+w.new)
			if c.OldRequests != w.old || c.NewRequests != w.new || math.Abs(c.NewKeyShare-share) > 1e-12 {
				t.Errorf("%s: client %q: got %d old, %d new, share %.6f; the events say %d, %d, %.6f",
					r.id, client, c.OldRequests, c.NewRequests, c.NewKeyShare, w.old, w.new, share)
			}
		}
		if len(got.Clients) != len(want[r.id]) {
			t.Errorf("%s: got clients %+v, want %d", r.id, got.Clients, len(want[r.id]))
		}
		if got.OldRequests != totalOld || got.NewRequests != totalNew {
			t.Errorf("%s: got %d old, %d new in all; the events say %d, %d", r.id, got.OldRequests, got.NewRequests, totalOld, totalNew)
		}
		var stragglers []string
		for _, c := range got.Stragglers {
			stragglers = append(stragglers, c.ClientID)
		}
		slices.Sort(stragglers)
		if !slices.Equal(stragglers, r.stragglers) || got.Safe {
			t.Errorf("%s: got stragglers %v (safe %v), want %v (not safe)", r.id, stragglers, got.Safe, r.stragglers)
		}
	}

	scheduled := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	for range 2 { // a repeated send (retry, another leader) queues nothing more
		if err := in.digest.Send(ctx, scheduled); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the digests in C_ALL and C_GLOBEX", func() bool {
		return len(f.posted("C_ALL", "Rotation digest")) == 1 && len(f.posted("C_GLOBEX", "Rotation digest")) == 1
	})

	all := sectionTexts(t, f.posted("C_ALL", "Rotation digest")[0].Blocks)
	if !strings.HasPrefix(all[0], "Rotation digest: 2 rotations in flight, 0 safe to retire") {
		t.Errorf("C_ALL header: %q", all[0])
	}
	body := strings.Join(all, "\n")
	for _, r := range rots {
		var totalOld, totalNew uint64
		for client, w := range want[r.id] {
			totalOld += w.old
			totalNew += w.new
			name := client
			if name == "" {
				name = "unknown"
			}
			frag := fmt.Sprintf("%s %s on new (%d old, %d new requests", name, pct(w.old, w.new), w.old, w.new)
			if !strings.Contains(body, frag) {
				t.Errorf("C_ALL digest lacks %q:\n%s", frag, body)
			}
		}
		frag := fmt.Sprintf("*`%s` → `%s`* (client %s): %s of traffic on `%s`", r.old, r.new, r.client, pct(totalOld, totalNew), r.new)
		if !strings.Contains(body, frag) {
			t.Errorf("C_ALL digest lacks %q:\n%s", frag, body)
		}
		for _, s := range r.stragglers {
			if !strings.Contains(body, s+" (last seen ") {
				t.Errorf("C_ALL digest does not name straggler %s:\n%s", s, body)
			}
		}
	}
	for _, frag := range []string{"19h30m left until the grace deadline (Sat 21 Nov 08:00 UTC)", "1d21h left until the grace deadline (Sun 22 Nov 10:00 UTC)", "not safe to retire `kid_acme_old` yet"} {
		if !strings.Contains(body, frag) {
			t.Errorf("C_ALL digest lacks %q:\n%s", frag, body)
		}
	}
	if strings.Contains(body, "kid_done_old") {
		t.Errorf("C_ALL digest shows a finished rotation:\n%s", body)
	}
	globex := strings.Join(sectionTexts(t, f.posted("C_GLOBEX", "Rotation digest")[0].Blocks), "\n")
	if !strings.Contains(globex, "Rotation digest: 1 rotation in flight") || !strings.Contains(globex, "kid_globex_old") || strings.Contains(globex, "kid_acme") {
		t.Errorf("C_GLOBEX digest should hold globex's rotation only:\n%s", globex)
	}
	if n := f.total(); n != 2 {
		t.Errorf("Slack got %d messages, want 2 (C_ALL, C_GLOBEX; none in C_LEAKS)", n)
	}
}

// pct is the share the test expects to read: new/(old+new) in percent, one decimal, rounded down.
func pct(old, new uint64) string {
	return fmt.Sprintf("%.1f%%", math.Floor(1000*float64(new)/float64(old+new)+1e-9)/10)
}

// TestSafeToRetireOnce: when the last straggler of a rotation moves, "safe to retire" is sent
// once per channel, whether the check runs again, a new instance (a restart, another leader)
// runs it, or the record of it was lost after the message was queued.
func TestSafeToRetireOnce(t *testing.T) {
	conn := newDB(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	rotate(t, conn, "kid_shop_old", "kid_shop_new", "shop", start, start.Add(5*24*time.Hour))
	rotate(t, conn, "kid_idle_old", "kid_idle_new", "idle", start, start.Add(5*24*time.Hour)) // no traffic: nothing moved
	shop, ops := event{ClientID: "shop"}, event{ClientID: "shop-ops"}
	var evs []event
	evs = append(evs, calls("kid_shop_old", shop, start, start.Add(3*time.Hour), 5*time.Minute)...) // last 10:55
	evs = append(evs, calls("kid_shop_new", shop, start.Add(2*time.Hour), start.Add(4*time.Hour), 5*time.Minute)...)
	evs = append(evs, calls("kid_shop_old", ops, start, start.Add(150*time.Minute), 10*time.Minute)...) // last 10:20
	evs = append(evs, calls("kid_shop_new", ops, start.Add(150*time.Minute), start.Add(4*time.Hour), 10*time.Minute)...)
	insertEvents(t, conn, evs)

	var mu sync.Mutex
	now := start.Add(3*time.Hour + 30*time.Minute) // 11:30: shop's last old call is 35 min old (< quiet_for)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	setNow := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }

	f := newFakeSlack(t)
	slackCfg := slackConfig(f)
	slackCfg.DefaultChannel = "C_ALL"
	slackCfg.Routes = []config.SlackRoute{{Channel: "C_SHOP", Client: []string{"shop*"}}}
	cfg := config.Default().Digest

	a := newInstance(t, conn, cfg, slackCfg, clock)
	if got, err := a.digest.Nudge(ctx); err != nil || len(got) != 0 {
		t.Fatalf("at 11:30 shop still calls the old key: nudged %v, %v; want none", got, err)
	}
	setNow(start.Add(4*time.Hour + 10*time.Minute)) // 12:10: both callers moved over an hour ago
	got, err := a.digest.Nudge(ctx)
	if err != nil || !slices.Equal(got, []string{"kid_shop_old>kid_shop_new"}) {
		t.Fatalf("at 12:10: nudged %v, %v; want the shop rotation (not the idle one)", got, err)
	}
	for range 3 {
		if got, err := a.digest.Nudge(ctx); err != nil || len(got) != 0 {
			t.Fatalf("again: nudged %v, %v; want none", got, err)
		}
	}
	waitFor(t, "the safe-to-retire messages", func() bool {
		return len(f.posted("C_ALL", "Safe to retire `kid_shop_old`")) == 1 && len(f.posted("C_SHOP", "Safe to retire `kid_shop_old`")) == 1
	})
	a.stop()

	// A new leader over the same database.
	setNow(start.Add(5 * time.Hour))
	b := newInstance(t, conn, cfg, slackCfg, clock)
	if got, err := b.digest.Nudge(ctx); err != nil || len(got) != 0 {
		t.Fatalf("new instance: nudged %v, %v; want none", got, err)
	}
	b.stop()

	// A leader that queued the messages and died before recording them: the next one records
	// them, and the outbox, which already holds them, posts nothing more.
	if err := conn.Exec(ctx, "TRUNCATE TABLE rotation_nudges"); err != nil {
		t.Fatal(err)
	}
	c := newInstance(t, conn, cfg, slackCfg, clock)
	if got, err := c.digest.Nudge(ctx); err != nil || !slices.Equal(got, []string{"kid_shop_old>kid_shop_new"}) {
		t.Fatalf("after losing the record: nudged %v, %v; want the shop rotation recorded again", got, err)
	}
	var rows, sent uint64
	if err := conn.QueryRow(ctx, `SELECT count(), countIf(state = 'sent') FROM notifications FINAL WHERE group_key = 'post|safe_to_retire|kid_shop_old>kid_shop_new'`).Scan(&rows, &sent); err != nil {
		t.Fatal(err)
	}
	if rows != 2 || sent != 2 {
		t.Errorf("outbox: %d messages (%d sent), want 2 sent (C_ALL, C_SHOP)", rows, sent)
	}
	c.stop()
	for _, channel := range []string{"C_ALL", "C_SHOP"} {
		if n := len(f.posted(channel, "Safe to retire")); n != 1 {
			t.Errorf("%s got %d safe-to-retire messages, want 1", channel, n)
		}
	}
	if n := f.total(); n != 2 {
		t.Errorf("Slack got %d messages in all, want 2", n)
	}
}

// TestCatchUpOnce: a leader that starts within digest.catch_up after a scheduled digest sends it,
// and the next leader does not send it again.
func TestCatchUpOnce(t *testing.T) {
	conn := newDB(t)
	start := time.Date(2026, 11, 19, 10, 0, 0, 0, time.UTC)
	rotate(t, conn, "kid_old", "kid_new", "acme", start, start.Add(72*time.Hour))
	insertEvents(t, conn, calls("kid_old", event{ClientID: "acme"}, start, start.Add(time.Hour), time.Minute))
	f := newFakeSlack(t)
	slackCfg := slackConfig(f)
	slackCfg.DefaultChannel = "C_ALL"
	cfg := config.Default().Digest // weekdays 09:00 UTC, catch up within 1h
	cfg.NudgeSchedule = ""
	now := func() time.Time { return time.Date(2026, 11, 20, 9, 20, 0, 0, time.UTC) } // a Friday

	for i := range 2 {
		in := newInstance(t, conn, cfg, slackCfg, now)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- in.digest.Run(ctx) }()
		waitFor(t, "the caught-up digest", func() bool { return len(f.posted("C_ALL", "Rotation digest")) >= 1 })
		// The outbox row of the digest is what the next leader finds.
		waitFor(t, "the digest recorded as sent", func() bool {
			var n uint64
			_ = conn.QueryRow(context.Background(), `SELECT count() FROM notifications FINAL WHERE group_key = 'post|digest|2026-11-20T09:00:00Z' AND state = 'sent'`).Scan(&n)
			return n == 1
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		in.stop()
		if n := len(f.posted("C_ALL", "Rotation digest")); n != 1 {
			t.Fatalf("leader %d: %d digests in C_ALL, want 1", i+1, n)
		}
	}
}

func TestChannels(t *testing.T) {
	routes := []config.SlackRoute{
		{Channel: "C_LEAK", Detector: []string{"leak*"}, Client: []string{"acme-*"}},
		{Channel: "C_ACME", Client: []string{"acme-*"}, Continue: true},
		{Channel: "C_BILLING", Client: []string{"*-billing"}},
		{Channel: "C_LATE", Client: []string{"acme-billing"}},
		{Channel: "C_CRIT", Severity: []string{"critical"}},
	}
	for _, tc := range []struct {
		name         string
		client       string
		channel      string
		defaultCh    string
		clientRoutes bool
		want         []string
	}{
		{"default channel and first match, continuing", "acme-billing", "", "C_ALL", true, []string{"C_ALL", "C_ACME", "C_BILLING"}},
		{"digest channel over slack.default_channel", "acme-web", "C_DIGEST", "C_ALL", true, []string{"C_DIGEST", "C_ACME"}},
		{"no route matches", "globex", "", "C_ALL", true, []string{"C_ALL"}},
		{"client routes off", "acme-billing", "", "C_ALL", false, []string{"C_ALL"}},
		{"no default channel", "globex-billing", "", "", true, []string{"C_BILLING"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Digest{cfg: config.Digest{Channel: tc.channel, ClientRoutes: tc.clientRoutes},
				slack: config.Slack{DefaultChannel: tc.defaultCh, Routes: routes}}
			if got := d.channels(tc.client); !slices.Equal(got, tc.want) {
				t.Errorf("channels(%q) = %v, want %v", tc.client, got, tc.want)
			}
		})
	}
}

func TestLastFire(t *testing.T) {
	sched, err := schedule.Parse("0 0 9 * * 1-5")
	if err != nil {
		t.Fatal(err)
	}
	fri := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		now    time.Time
		within time.Duration
		want   time.Time
	}{
		{fri.Add(9*time.Hour + 20*time.Minute), time.Hour, fri.Add(9 * time.Hour)},
		{fri.Add(9 * time.Hour), time.Hour, fri.Add(9 * time.Hour)},
		{fri.Add(10*time.Hour + time.Second), time.Hour, time.Time{}},
		{fri.Add(8 * time.Hour), time.Hour, time.Time{}},
		{fri.Add(9*time.Hour + 20*time.Minute), 0, time.Time{}},
		{fri.Add(24*time.Hour + 9*time.Hour + 20*time.Minute), time.Hour, time.Time{}}, // Saturday
	} {
		if got := lastFire(sched, tc.now, tc.within); !got.Equal(tc.want) {
			t.Errorf("lastFire(%s, %s) = %s, want %s", tc.now, tc.within, got, tc.want)
		}
	}
}

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		old, new uint64
		want     string
	}{
		{0, 0, "n/a"}, {1, 0, "0.0%"}, {0, 5, "100.0%"}, {1, 2499, "99.9%"}, {71, 29, "29.0%"}, {2, 1, "33.3%"},
	} {
		if got := percent(tc.old, tc.new); got != tc.want {
			t.Errorf("percent(%d, %d) = %q, want %q", tc.old, tc.new, got, tc.want)
		}
	}
}

// TestDigestAndSafeWebhooks: a scheduled digest and a "safe to retire" nudge each reach the
// notification webhook receiver once, verified by the reference Standard Webhooks library,
// also when sent again (a retry, a new leader).
func TestDigestAndSafeWebhooks(t *testing.T) {
	conn := newDB(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	rotate(t, conn, "kid_shop_old", "kid_shop_new", "shop", start, start.Add(5*24*time.Hour))
	shop := event{ClientID: "shop"}
	evs := calls("kid_shop_old", shop, start, start.Add(2*time.Hour), 5*time.Minute)
	evs = append(evs, calls("kid_shop_new", shop, start.Add(2*time.Hour), start.Add(4*time.Hour), 5*time.Minute)...)
	insertEvents(t, conn, evs)
	now := func() time.Time { return start.Add(5 * time.Hour) }

	rcv := webhooktest.NewReceiver(t)
	f := newFakeSlack(t)
	slackCfg := slackConfig(f)
	slackCfg.DefaultChannel = "C_ALL"
	scheduled := start.Add(time.Hour)
	for range 2 { // the second leader sends and nudges again: nothing more is published
		o, err := webhook.NewOutbox(conn, []config.Webhook{rcv.Endpoint("ops")}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		in := newInstance(t, conn, config.Default().Digest, slackCfg, now)
		in.digest.WithPublisher(o)
		if err := in.digest.Send(ctx, scheduled); err != nil {
			t.Fatal(err)
		}
		if _, err := in.digest.Nudge(ctx); err != nil {
			t.Fatal(err)
		}
		if err := o.SendDue(ctx); err != nil {
			t.Fatal(err)
		}
		in.stop()
	}
	got := rcv.Deliveries()
	if len(got) != 2 || got[0].Type != webhook.TypeDigestSent || got[1].Type != webhook.TypeRotationSafeRetire {
		t.Fatalf("deliveries %+v: want digest.sent and rotation.safe_to_retire once each", got)
	}
	var dg DigestData
	if err := json.Unmarshal(got[0].Data, &dg); err != nil {
		t.Fatal(err)
	}
	if !dg.Scheduled.Equal(scheduled) || len(dg.Rotations) != 1 || dg.Rotations[0].OldKeyID != "kid_shop_old" || got[0].ID != webhook.EventID("digest|"+scheduled.Format(time.RFC3339)) {
		t.Errorf("digest.sent %s: %s", got[0].ID, got[0].Data)
	}
	var r Rotation
	if err := json.Unmarshal(got[1].Data, &r); err != nil {
		t.Fatal(err)
	}
	if !r.Safe || r.OldKeyID != "kid_shop_old" || r.NewKeyID != "kid_shop_new" || got[1].ID != webhook.EventID(kindSafeToRetire+"|"+r.ID) {
		t.Errorf("rotation.safe_to_retire %s: %s", got[1].ID, got[1].Data)
	}
}
