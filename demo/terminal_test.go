package demo

import (
	"strings"
	"testing"

	"github.com/slack-go/slack"
)

func TestTerminalBlocks(t *testing.T) {
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain(":red_circle: CRITICAL — leak on kid_x")),
		slack.NewSectionBlock(markdown("*leak* · critical · score 110\nkid_x used from a new network"),
			[]*slack.TextBlockObject{markdown("*Key*\n`kid_x`"), markdown("*New networks*\nAS64666 BR\nAS64667 AR")}, nil),
		slack.NewContextBlock("", markdown("firing since 2026-11-26 01:29 UTC · :zap: dry-run: would revoke")),
		slack.NewActionBlock("", slack.NewButtonBlockElement("keywatch_grafana", "fp", plain("Grafana")).WithURL("http://grafana/d/x")),
		slack.NewContextBlock("", markdown("<https://wiki/runbook|Runbook>")),
	}
	got := terminalBlocks(blocks)
	want := strings.Join([]string{
		"🔴 CRITICAL — leak on kid_x",
		strings.Repeat("━", 26),
		"leak · critical · score 110",
		"kid_x used from a new network",
		"  Key: `kid_x`",
		"  New networks: AS64666 BR",
		"                AS64667 AR",
		"  (firing since 2026-11-26 01:29 UTC · ⚡ dry-run: would revoke)",
		"  [Grafana] http://grafana/d/x",
		"  (Runbook (https://wiki/runbook))",
	}, "\n") + "\n"
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

func markdown(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

// The terminal shows a value as it is, in its code span: no stars taken for bold, entities
// decoded, and no control character reaches the terminal.
func TestTerminalTextKeepsValues(t *testing.T) {
	got := terminalText("*leak* · `*bold* &lt;@U999&gt;` · &lt;!channel&gt; <https://r.example|Runbook> \x1b[31mred")
	want := "leak · `*bold* <@U999>` · <!channel> Runbook (https://r.example) [31mred"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}
