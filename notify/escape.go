package notify

import (
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

// Values in Slack texts (issue #14, item 7).
//
// Every value keywatch shows in Slack that it did not write itself (key, client and rotation ids,
// addresses, user agents, routes, outcomes, networks, summaries, display fields, evidence, action
// details, the Approver's answer, silences) goes into mrkdwn through mrkdwnValue, mrkdwnProse,
// mrkdwnCode or fieldValue (a display field, word by word), and into plain_text through plainValue.
// They share one escaping, escapeValue:
//
//   - control characters (new lines included) become spaces, so a value cannot start a ">" quote
//     line, fake a field or move a terminal's cursor; Unicode format characters (bidi overrides,
//     zero-width characters) are dropped, so a value cannot reorder or hide what it shows;
//   - it is cut to maxValue runes (maxProse for summaries and details) ending in "…", before
//     escaping, so a 60 KB user agent stays small and no entity is cut in two;
//   - &, < and > become &amp; &lt; &gt;, Slack's escaping: no <!channel>, <!here>, <@U…> or
//     <https://…|label> can come from a value;
//   - a value holding a character mrkdwn formats with (* _ ~ `), an emoji code (:name:) or a URL
//     (://) is shown as inline code, in which Slack applies no formatting, with its backticks
//     replaced by ˋ (U+02CB) so that it cannot close the span; any other value is shown as is.
//     Zero-width characters next to the formatting characters were not chosen: their effect on
//     Slack's parser is undocumented (Markdown converters insert a zero-width space to make Slack
//     format inside a word, the opposite of what is wanted here).
//
// Key ids are always shown as inline code (mrkdwnCode), as before. The mrkdwn text objects are
// verbatim, so Slack does not turn bare URLs, channel names or @mentions in them into links or
// mentions either; the links keywatch builds itself (the runbook) are written by mrkdwnLink, whose
// URL must be http(s) and is escaped, as is its label. plain_text (headers, button labels, dialog
// titles) is not parsed by Slack and is only cleaned and cut (plainValue).
const (
	maxValue = 200
	maxProse = 500
)

// formatting matches what makes mrkdwn format a value unless it is inline code.
var formatting = regexp.MustCompile("[*_~`]|://|:[A-Za-z0-9+-]+:")

// escapeValue cleans s and cuts it to n runes (see above); the result is not escaped yet.
func escapeValue(s string, n int) string {
	var b strings.Builder
	runes := 0
	for _, r := range s {
		if runes > n { // enough to know it is cut
			break
		}
		switch {
		case unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp):
			b.WriteByte(' ')
		case unicode.Is(unicode.Cf, r):
			continue // bidi overrides, zero-width characters: dropped
		default:
			b.WriteRune(r) // invalid UTF-8 arrives as U+FFFD
		}
		runes++
	}
	return truncate(b.String(), n)
}

var entities = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// mrkdwnValue is a value as mrkdwn shows it: escaped, cut to maxValue runes, as inline code when
// it holds formatting characters.
func mrkdwnValue(s string) string { return mrkdwnN(s, maxValue) }

// mrkdwnProse is mrkdwnValue for sentences (summaries, details): cut to maxProse runes.
func mrkdwnProse(s string) string { return mrkdwnN(s, maxProse) }

func mrkdwnN(s string, n int) string {
	s = escapeValue(s, n)
	if formatting.MatchString(s) {
		return inlineCode(s)
	}
	return entities.Replace(s)
}

// mrkdwnCode is a value always shown as inline code (key ids).
func mrkdwnCode(s string) string { return inlineCode(escapeValue(s, maxValue)) }

func inlineCode(s string) string {
	// A code span with spaces at its ends may not be taken for one.
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(entities.Replace(s), "`", "ˋ") + "`"
}

// MrkdwnValue returns a value (an id, an address, a reason) to put into Slack mrkdwn, such as a
// Post's Text or Blocks: control characters and bidi overrides removed, cut to 200 characters,
// &, < and > escaped, and shown as inline code when it holds mrkdwn formatting characters, so
// that it can neither mention (<!channel>, <@U…>), link (<url|label>) nor format.
func MrkdwnValue(s string) string { return mrkdwnValue(s) }

// MrkdwnProse is mrkdwnProse for other packages' Slack texts: a sentence that holds values
// (a readiness reason), escaped and cut to maxProse.
func MrkdwnProse(s string) string { return mrkdwnProse(s) }

// plainValue is a value for a plain_text object, which Slack does not parse: cleaned and cut.
func plainValue(s string, n int) string { return escapeValue(s, n) }

// mrkdwnLink writes the link <url|label> of a URL keywatch was configured with. A URL that is not
// http(s) is shown as text, not linked.
func mrkdwnLink(rawURL, label string) string {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(rawURL) > maxURL {
		return mrkdwnValue(label + " " + rawURL)
	}
	// u.String() percent-encodes spaces and controls; | would end the URL, < and > the link.
	link := strings.NewReplacer("&", "&amp;", "<", "%3C", ">", "%3E", "|", "%7C").Replace(u.String())
	return "<" + link + "|" + entities.Replace(escapeValue(label, maxValue)) + ">"
}

// maxURL is the longest URL a Slack button or link takes.
const maxURL = 3000

// fieldValue is a display field's value (finding.Field) as mrkdwn shows it. A detector writes it
// in plain text, often of several values ("kid_old → kid_new (retired)", "revoked_key 40"), any of
// which an attacker may have written, and one item per line where it lists several (the new
// networks of a leak). The whole is cut to maxProse runes and maxFieldLines lines; each line is
// cleaned as mrkdwnProse, then each word is shown by mrkdwnValue's rules (escaped, cut to maxValue
// runes, as inline code when it holds formatting characters), with the brackets and punctuation
// around a word outside its code span. So a key id is code and the words around it are not, and
// no formatting, mention, quote or link comes from a value.
func fieldValue(s string) string {
	lines := strings.Split(truncate(s, maxProse), "\n")
	lines = lines[:min(len(lines), maxFieldLines)]
	for l, line := range lines {
		words := strings.Split(escapeValue(line, maxProse), " ")
		for i, w := range words {
			lead := len(w) - len(strings.TrimLeft(w, "(["))
			core := strings.TrimRight(w[lead:], ")],;.")
			words[i] = w[:lead] + mrkdwnValue(core) + w[lead+len(core):]
		}
		lines[l] = strings.Join(words, " ")
	}
	return strings.Join(lines, "\n")
}

// maxFieldLines bounds the lines of a display field's value.
const maxFieldLines = 20

// fieldLabel is a field's label made from data (an evidence key, a signal kind, a detector's field
// name), shown in bold: letters, digits, spaces and - . , ( ) / + only ("_" reads as a space), at
// most 60 characters.
func fieldLabel(s string) string {
	var b strings.Builder
	for _, r := range escapeValue(s, 60) {
		switch {
		case r == '_':
			b.WriteByte(' ')
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == ' ' || strings.ContainsRune("-.,()/+", r):
			b.WriteRune(r)
		}
	}
	l := strings.TrimSpace(b.String())
	if l == "" {
		return "field"
	}
	return l
}

// slackUserID matches Slack's user ids, which keywatch writes as mentions <@U…>.
var slackUserID = regexp.MustCompile(`^[UW][A-Z0-9_]{1,30}$`)

// mention is <@id> for a Slack user id, else the text escaped as a value.
func mention(id string) string {
	if slackUserID.MatchString(id) {
		return "<@" + id + ">"
	}
	return mrkdwnValue(id)
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, true, false)
}

// markdown is a mrkdwn text object of text keywatch composed with the functions above. It is
// verbatim: Slack does not auto-link URLs or parse mentions in it, only the <url|label> and <@U…>
// keywatch wrote.
func markdown(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, true)
}

// truncate cuts s to at most n characters (runes), ending in "…" when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n < 1 {
		return ""
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
