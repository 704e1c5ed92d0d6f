package digest

import (
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/notify"
)

// Slack's limits: 50 blocks per message (a header, a context line, a section per rotation and a
// "more" line: 43 at most), 3000 characters per section text, 150 per header.
const (
	maxRotationsShown = 40
	maxClientsShown   = 10
	maxStragglers     = 5
	maxSectionChars   = 3000
)

// renderDigest writes a channel's digest: a header, then one section per rotation.
func renderDigest(rep Report) (string, slack.Blocks) {
	safe := 0
	for _, r := range rep.Rotations {
		if r.Safe {
			safe++
		}
	}
	text := fmt.Sprintf("Rotation digest: %s in flight, %d safe to retire", plural(len(rep.Rotations), "rotation"), safe)
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, text, false, false)),
		slack.NewContextBlock("", markdown(fmt.Sprintf("As of %s. Shares count requests since the hour each rotation started; stragglers are callers still on the old key.",
			rep.At.UTC().Format("Mon 2 Jan 15:04 UTC")))),
	}
	for i, r := range rep.Rotations {
		if i == maxRotationsShown {
			blocks = append(blocks, slack.NewContextBlock("", markdown(fmt.Sprintf("%d more rotations not shown", len(rep.Rotations)-i))))
			break
		}
		blocks = append(blocks, slack.NewSectionBlock(markdown(truncate(rotationText(r, rep.At), maxSectionChars)), nil, nil))
	}
	return text, slack.Blocks{BlockSet: blocks}
}

// rotationText is one rotation's part of the digest.
func rotationText(r Rotation, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s → %s* (client %s): %s of traffic on %s, %s\n",
		value(r.OldKeyID), value(r.NewKeyID), orUnknown(r.ClientID), percent(r.OldRequests, r.NewRequests), value(r.NewKeyID), timeLeft(r.Deadline, now))
	if r.Safe {
		fmt.Fprintf(&b, ":white_check_mark: *safe to retire %s*: %s\n", value(r.OldKeyID), notify.MrkdwnProse(r.Reason))
	} else {
		fmt.Fprintf(&b, ":warning: *not safe to retire %s yet*: %s\n", value(r.OldKeyID), notify.MrkdwnProse(r.Reason))
	}
	if len(r.Clients) > 0 {
		parts := make([]string, 0, min(len(r.Clients), maxClientsShown))
		for i, c := range r.Clients {
			if i == maxClientsShown {
				parts = append(parts, fmt.Sprintf("%d more", len(r.Clients)-i))
				break
			}
			p := fmt.Sprintf("%s %s on new (%d old, %d new requests", orUnknown(c.ClientID), percent(c.OldRequests, c.NewRequests), c.OldRequests, c.NewRequests)
			if c.OldLastSeen != nil {
				p += ", old key last seen " + detect.Span(now.Sub(*c.OldLastSeen)) + " ago"
			}
			parts = append(parts, p+")")
		}
		b.WriteString("Clients: " + strings.Join(parts, "; ") + "\n")
	} else {
		b.WriteString("No traffic on either key since the rotation started.\n")
	}
	if len(r.Stragglers) > 0 {
		parts := make([]string, 0, min(len(r.Stragglers), maxStragglers))
		for i, c := range r.Stragglers {
			if i == maxStragglers {
				parts = append(parts, fmt.Sprintf("%d more", len(r.Stragglers)-i+r.Unlisted))
				break
			}
			parts = append(parts, fmt.Sprintf("%s (last seen %s ago, %d requests on the old key)", callerName(c), detect.Span(now.Sub(c.LastSeen)), c.Requests))
		}
		if len(r.Stragglers) <= maxStragglers && r.Unlisted > 0 {
			parts = append(parts, fmt.Sprintf("%d more", r.Unlisted))
		}
		b.WriteString("Stragglers: " + strings.Join(parts, "; "))
	}
	return strings.TrimRight(b.String(), "\n")
}

// renderSafe is the "safe to retire" nudge.
func renderSafe(r Rotation) string {
	return fmt.Sprintf(":white_check_mark: Safe to retire %s: every caller moved to %s (rotation %s, client %s; readiness: %s)",
		value(r.OldKeyID), value(r.NewKeyID), value(r.ID), orUnknown(r.ClientID), notify.MrkdwnProse(r.Reason))
}

// value is an id, address or user agent in mrkdwn: whoever sends requests to the gateway writes
// them, so each is escaped and cut (notify.MrkdwnValue).
func value(s string) string { return notify.MrkdwnValue(s) }

func callerName(c detect.Caller) string {
	if c.ClientID != "" {
		return value(c.ClientID)
	}
	return value(c.IP) + " (" + value(c.UserAgent) + ")"
}

func orUnknown(client string) string {
	if client == "" {
		return "unknown"
	}
	return value(client)
}

// percent writes new's share of old+new with one decimal, rounded down so that a remainder on the
// old key is never rounded away (99.96% is "99.9%", not "100.0%").
func percent(old, new uint64) string {
	if old+new == 0 {
		return "n/a"
	}
	tenths := new * 1000 / (old + new)
	return fmt.Sprintf("%d.%d%%", tenths/10, tenths%10)
}

// timeLeft writes the time to a grace deadline.
func timeLeft(deadline *time.Time, now time.Time) string {
	switch {
	case deadline == nil:
		return "no grace deadline"
	case deadline.Before(now):
		return fmt.Sprintf("grace deadline passed %s ago (%s)", detect.Span(now.Sub(*deadline)), deadline.UTC().Format("Mon 2 Jan 15:04 UTC"))
	}
	return fmt.Sprintf("%s left until the grace deadline (%s)", detect.Span(deadline.Sub(now)), deadline.UTC().Format("Mon 2 Jan 15:04 UTC"))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// markdown is a mrkdwn text object marked verbatim, so Slack turns no bare URL, channel name or
// @mention in it into a link or mention.
func markdown(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, true)
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
