package notify

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/slack-go/slack"
)

// terminalEmoji are the Slack emoji codes keywatch's messages use, as terminals show them.
var terminalEmoji = map[string]string{
	":red_circle:": "🔴", ":large_orange_circle:": "🟠", ":large_blue_circle:": "🔵",
	":white_check_mark:": "✅", ":mute:": "🔇", ":bell:": "🔔", ":zap:": "⚡", ":warning:": "⚠️",
}

var (
	emojiCode = regexp.MustCompile(`:[a-z0-9_+-]+:`)
	// slackLink is <url|label> or <url> in Slack's mrkdwn.
	slackLink = regexp.MustCompile(`<([^|>]+)(?:\|([^>]+))?>`)
	// slackBold is *bold*, which a terminal shows as is without the stars.
	slackBold = regexp.MustCompile(`\*([^*\n]+)\*`)
)

// TerminalText turns Slack mrkdwn into plain text: emoji codes become emoji, links "label (url)",
// *bold* loses its stars; `code` and the rest stay as written.
func TerminalText(s string) string {
	s = emojiCode.ReplaceAllStringFunc(s, func(code string) string {
		if e, ok := terminalEmoji[code]; ok {
			return e
		}
		return code
	})
	s = slackLink.ReplaceAllStringFunc(s, func(m string) string {
		p := slackLink.FindStringSubmatch(m)
		if p[2] == "" {
			return p[1]
		}
		return p[2] + " (" + p[1] + ")"
	})
	s = slackBold.ReplaceAllString(s, "$1")
	s = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
	return s
}

// TerminalBlocks renders a Block Kit message as plain text for a terminal, one line per block
// line, so that a message reads as it does in Slack: the header underlined, section text, fields
// as "label: value" lines (a field's first line is its label), context lines in brackets,
// buttons as [label] (with their link). Blocks it does not know are shown by type.
func TerminalBlocks(blocks []slack.Block) string {
	var b strings.Builder
	line := func(indent, s string) {
		for l := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
			b.WriteString(strings.TrimRight(indent+l, " ") + "\n")
		}
	}
	for _, blk := range blocks {
		switch v := blk.(type) {
		case *slack.HeaderBlock:
			if v.Text != nil {
				t := TerminalText(v.Text.Text)
				line("", t)
				line("", strings.Repeat("━", min(max(len([]rune(t)), 10), 72)))
			}
		case *slack.SectionBlock:
			if v.Text != nil {
				line("", TerminalText(v.Text.Text))
			}
			for _, f := range v.Fields {
				label, value, ok := strings.Cut(TerminalText(f.Text), "\n")
				if !ok {
					line("  ", label)
					continue
				}
				value = strings.ReplaceAll(value, "\n", "\n"+strings.Repeat(" ", 2+len([]rune(label))))
				line("  ", label+": "+value)
			}
		case *slack.ContextBlock:
			var parts []string
			for _, e := range v.ContextElements.Elements {
				if t, ok := e.(*slack.TextBlockObject); ok {
					parts = append(parts, TerminalText(t.Text))
				}
			}
			if len(parts) > 0 {
				line("  ", "("+strings.Join(parts, " · ")+")")
			}
		case *slack.ActionBlock:
			if v.Elements == nil {
				continue
			}
			var parts []string
			for _, e := range v.Elements.ElementSet {
				btn, ok := e.(*slack.ButtonBlockElement)
				if !ok || btn.Text == nil {
					continue
				}
				p := "[" + btn.Text.Text + "]"
				if btn.URL != "" {
					p += " " + btn.URL
				}
				parts = append(parts, p)
			}
			if len(parts) > 0 {
				line("  ", strings.Join(parts, "  "))
			}
		case *slack.DividerBlock:
			line("", strings.Repeat("─", 40))
		default:
			line("", fmt.Sprintf("[%s block]", blk.BlockType()))
		}
	}
	return b.String()
}

// TerminalMessage renders a chat.postMessage or chat.update request's text and blocks (the
// "blocks" form field, a JSON array) as TerminalBlocks does; without blocks it is the text.
func TerminalMessage(text, blocksJSON string) (string, error) {
	if blocksJSON == "" || blocksJSON == "null" || blocksJSON == "[]" {
		return TerminalText(text) + "\n", nil
	}
	var blocks slack.Blocks
	if err := json.Unmarshal([]byte(blocksJSON), &blocks); err != nil {
		return "", fmt.Errorf("notify: read Block Kit blocks: %w", err)
	}
	return TerminalBlocks(blocks.BlockSet), nil
}
