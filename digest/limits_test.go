package digest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/internal/config"
)

// TestDigestWithinSlackBlockLimit: Slack refuses a message with more than 50 blocks
// (render.go's own comment says so). renderDigest shows up to 40 rotations at two blocks each
// (divider + section) after a header and a context block, so 25 or more rotations in flight make a
// digest Slack cannot post.
func TestDigestWithinSlackBlockLimit(t *testing.T) {
	now := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	for _, n := range []int{24, 25, 40, 60} {
		rep := Report{At: now}
		for i := range n {
			rep.Rotations = append(rep.Rotations, Rotation{ID: fmt.Sprintf("k%d>k%dn", i, i), ClientID: "acme",
				OldKeyID: fmt.Sprintf("k%d", i), NewKeyID: fmt.Sprintf("k%dn", i), Started: now.Add(-time.Hour), Reason: "r"})
		}
		_, blocks := renderDigest(rep)
		if got := len(blocks.BlockSet); got > 50 {
			t.Errorf("%d rotations in flight: %d blocks, Slack accepts at most 50", n, got)
		}
	}
}

// TestNoNudgeWithoutOldKeyUseSinceStart: docs/alerting.md: the nudge is for rotations "whose old key
// became safe to retire after being used since the rotation started"; "a rotation that never saw
// traffic on its old key ... gets no nudge". Nudge tests "used" with key_caller_hours counted from the
// top of the start hour, so calls made before the rotation started (10:00-10:35, rotation at
// 10:40) count as use since the start, and the same rotation started at 11:00 would get none.
func TestNoNudgeWithoutOldKeyUseSinceStart(t *testing.T) {
	conn := newDB(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 20, 10, 40, 0, 0, time.UTC)
	rotate(t, conn, "kid_r_old", "kid_r_new", "shop", start, start.Add(5*24*time.Hour))
	shop := event{ClientID: "shop"}
	var evs []event
	evs = append(evs, calls("kid_r_old", shop, start.Add(-40*time.Minute), start.Add(-time.Minute), 5*time.Minute)...) // 10:00-10:35, before the start
	evs = append(evs, calls("kid_r_new", shop, start.Add(5*time.Minute), start.Add(80*time.Minute), 5*time.Minute)...)
	insertEvents(t, conn, evs)
	f := newFakeSlack(t)
	slackCfg := slackConfig(f)
	slackCfg.DefaultChannel = "C_ALL"
	inst := newInstance(t, conn, config.Default().Digest, slackCfg, func() time.Time { return start.Add(2 * time.Hour) })
	got, err := inst.digest.Nudge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("nudged %v although the old key was not used since the rotation started", got)
	}
}

// TestDigestEscapesWhatCallersWrite: client ids, user agents and readiness reasons come from
// whoever sends requests to the gateway; none may mention, link or format in the digest or nudge.
func TestDigestEscapesWhatCallersWrite(t *testing.T) {
	now := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	evil := "<!channel> <https://evil.example|Approve the revoke> *bold* <@U999>"
	r := Rotation{ID: "rot", ClientID: evil, OldKeyID: "k_old", NewKeyID: "k_new", Started: now.Add(-time.Hour),
		Reason: "k_old is still used by 1 caller (" + evil + ")", Unlisted: 7,
		Clients:    []Client{{ClientID: evil, OldRequests: 1}},
		Stragglers: []detect.Caller{{IP: "203.0.113.9", UserAgent: evil, LastSeen: now}}}
	text := rotationText(r, now) + "\n" + renderSafe(r)
	for _, bad := range []string{"<!channel>", "<https://evil", "<@U999>"} {
		if strings.Contains(text, bad) {
			t.Errorf("the digest holds %q unescaped:\n%s", bad, text)
		}
	}
	if !strings.Contains(text, "7 more") {
		t.Errorf("the digest does not count the 7 stragglers readiness did not list:\n%s", text)
	}
}
