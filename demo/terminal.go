package demo

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"

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
	// codeSpan is `code`, where mrkdwn formats nothing: values are shown in it (see escape.go).
	codeSpan = regexp.MustCompile("`[^`\n]*`")
	// spanMark stands for the i-th code span while the rest is converted; control characters
	// never reach the conversion (they are removed first).
	spanMark = regexp.MustCompile("\x00([0-9]+)\x00")
)

// terminalText turns Slack mrkdwn into plain text: emoji codes become emoji, links "label (url)",
// *bold* loses its stars; `code` stays as written, its content untouched; entities are decoded.
// Control characters other than new lines and tabs are removed, so that nothing in a message can
// move a terminal's cursor or change its colours.
func terminalText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	var spans []string
	s = codeSpan.ReplaceAllStringFunc(s, func(span string) string {
		spans = append(spans, span)
		return "\x00" + strconv.Itoa(len(spans)-1) + "\x00"
	})
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
	s = spanMark.ReplaceAllStringFunc(s, func(m string) string {
		i, _ := strconv.Atoi(spanMark.FindStringSubmatch(m)[1])
		return spans[i]
	})
	s = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
	return s
}

// terminalBlocks renders a Block Kit message as plain text for a terminal, one line per block
// line, so that a message reads as it does in Slack: the header underlined, section text, fields
// as "label: value" lines (a field's first line is its label), context lines in brackets,
// buttons as [label] (with their link). Blocks it does not know are shown by type.
func terminalBlocks(blocks []slack.Block) string {
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
				t := terminalText(v.Text.Text)
				line("", t)
				line("", strings.Repeat("━", min(max(len([]rune(t)), 10), 72)))
			}
		case *slack.SectionBlock:
			if v.Text != nil {
				line("", terminalText(v.Text.Text))
			}
			for _, f := range v.Fields {
				label, value, ok := strings.Cut(terminalText(f.Text), "\n")
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
					parts = append(parts, terminalText(t.Text))
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

// terminalMessage renders a chat.postMessage or chat.update request's text and blocks (the
// "blocks" form field, a JSON array) as terminalBlocks does; without blocks it is the text.
func terminalMessage(text, blocksJSON string) (string, error) {
	if blocksJSON == "" || blocksJSON == "null" || blocksJSON == "[]" {
		return terminalText(text) + "\n", nil
	}
	var blocks slack.Blocks
	if err := json.Unmarshal([]byte(blocksJSON), &blocks); err != nil {
		return "", fmt.Errorf("notify: read Block Kit blocks: %w", err)
	}
	return terminalBlocks(blocks.BlockSet), nil
}
