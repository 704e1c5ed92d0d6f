package ingest

import (
	"net/url"
	"regexp"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// redacted stands in for every secret taken out.
const redacted = "[redacted]"

const (
	// excerptMax bounds the excerpt of a dead letter, in bytes, before the "…" that marks a cut.
	excerptMax = 512
	// excerptWork is how much excerpt is built before it is cut to excerptMax: a known key that
	// straddles excerptMax is whole, and taken out, before the cut.
	excerptWork = 4 * excerptMax
	// excerptInput is how much of a message is read for its excerpt.
	excerptInput = 64 << 10
	// excerptDepth is how deeply nested objects and arrays are read as JSON; deeper, the rest of
	// the message is treated as text.
	excerptDepth = 64
	// minKnownLen is the shortest known key taken out wherever it stands: shorter ones would take
	// out ordinary words, and are no secret worth the name.
	minKnownLen = 8
)

// Redactor takes secrets out of what keywatch keeps of a message it could not turn into an event:
// the dead letter's excerpt and error. It owns what a secret looks like in a message:
//
//   - the value of any member named like the last key of one of the mapping's secret paths (its
//     api_key path: "credential" for api_key: {path: auth.credential}), whatever that name is,
//     compared after JSON unescaping and case-insensitively, wherever it stands: nested, and in
//     every element of an array (a batch of events);
//   - the value of any member whose unescaped name says it holds a secret (api_key, apikey,
//     X-API-Key, authorization, token, secret, password, credential, cookie, signature, session,
//     any name ending in "key", ...), the whole value, whatever its type;
//   - in any text (string values, member names, messages that are not JSON): name=value and
//     name: value pairs with such a name (query strings, form bodies, headers, percent-encoded
//     names such as api%5Fkey), "Bearer ..." and other authorization schemes, and tokens of
//     well-known secret formats (sk_live_..., ghp_..., AKIA..., JWTs, ...);
//   - in text that cannot be read as JSON, also any long token of mixed letters and digits;
//   - wherever it stands, a raw key the caller knows the message holds (the one at the mapping's
//     api_key path).
//
// As far as a message is JSON, its excerpt keeps the message's bytes, but for the strings that
// must change (a secret in them, a control, bidi or other invisible character): those are written
// again, unescaped as JSON reads them and escaped as a terminal needs. Text that is not JSON has
// those characters escaped as \uXXXX. A Redactor is safe for concurrent use.
type Redactor struct {
	names map[string]bool // lower-cased last keys of the mapping's secret paths
}

// NewRedactor returns a Redactor for a mapping whose secret paths (mapping.Mapping.SecretPaths)
// are secretPaths; none is fine.
func NewRedactor(secretPaths [][]string) *Redactor {
	r := &Redactor{names: map[string]bool{}}
	for _, p := range secretPaths {
		if len(p) > 0 {
			r.names[strings.ToLower(p[len(p)-1])] = true
		}
	}
	return r
}

// Excerpt returns a short (at most excerptMax bytes and "…"), valid UTF-8 excerpt of msg with
// every secret replaced by "[redacted]", including every occurrence of the known raw keys. What
// needs no change keeps its bytes, so that an error's byte offsets still point into it.
func (r *Redactor) Excerpt(msg []byte, known ...string) string {
	in := msg[:min(len(msg), excerptInput)]
	w := excerptWriter{r: r, in: in, known: known, errAt: -1}
	w.space()
	if w.i < len(in) && (in[w.i] == '{' || in[w.i] == '[' || in[w.i] == '"') {
		if w.value(false, 0) {
			w.errAt = w.i // anything after the value is text
		}
	} else {
		w.errAt = w.i
	}
	if !w.stopped() && w.errAt >= 0 && w.errAt < len(in) {
		w.text(in[w.errAt:])
	}
	return cutExcerpt(scrubKnown(string(w.out), known))
}

// Text returns s, a decode error about a message, with every secret replaced by "[redacted]":
// the known raw keys and well-known formats wherever they stand, and in the values it quotes
// ("..."), pairs and schemes as in an excerpt; and with every control, bidi and other invisible
// character escaped. The error's own words are left alone (encoding/json's "after object
// key:value pair" is no key).
func (r *Redactor) Text(s string, known ...string) string {
	s = scrubKnown(s, known)
	s = secretShape.ReplaceAllString(s, redacted)
	var b strings.Builder
	for {
		open := strings.IndexByte(s, '"')
		if open < 0 {
			break
		}
		end := open + 1
		for end < len(s) && s[end] != '"' {
			if s[end] == '\\' {
				end++
			}
			end++
		}
		end = min(end, len(s))
		b.WriteString(s[:open+1])
		b.WriteString(r.redactText(s[open+1:end], false))
		s = s[end:]
		if s != "" {
			b.WriteByte('"')
			s = s[1:]
		}
	}
	b.WriteString(s)
	return string(appendEscapedText(nil, b.String()))
}

// secretName reports whether a member, parameter or header called name holds a secret.
func (r *Redactor) secretName(name string) bool {
	lower := strings.ToLower(name)
	return r.names[lower] || keyLike(lower)
}

// secretWords are the parts of a (lower-cased, letters and digits only) name that say its value
// is a secret.
var secretWords = []string{
	"apikey", "token", "secret", "passw", "passphrase", "authorization", "credential", "cookie",
	"privatekey", "signature", "bearer",
}

// keyLike reports whether a lower-cased name says its value is a secret. Punctuation does not
// count: x-api-key, X_API_KEY and x.api.key are all apikey. A name ending in "id" names an
// identifier (api_key_id, token_id), not a secret, unless it is a session's.
func keyLike(lower string) bool {
	n := make([]byte, 0, len(lower))
	for i := 0; i < len(lower); i++ {
		if c := lower[i]; c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			n = append(n, c)
		}
	}
	s := string(n)
	switch {
	case strings.Contains(s, "session"):
		return true
	case strings.HasSuffix(s, "id"), strings.HasSuffix(s, "ids"):
		return false // an identifier: api_key_id, token_id
	}
	for _, w := range secretWords {
		if strings.Contains(s, w) {
			return true
		}
	}
	return strings.HasSuffix(s, "key") || strings.HasSuffix(s, "keys") || s == "pwd" || s == "pass" || s == "sig" || s == "jwt"
}

// excerptWriter writes a message, as far as it is JSON, with its secrets taken out.
type excerptWriter struct {
	r     *Redactor
	in    []byte
	known []string
	i     int // next byte of in
	out   []byte
	mute  int  // > 0 while reading a secret value, which is not written
	eof   bool // in ended inside a value
	errAt int  // where in stops being JSON (-1: it does not, as far as it was read)
}

func (w *excerptWriter) stopped() bool { return w.eof || len(w.out) >= excerptWork }

func (w *excerptWriter) emit(b []byte) {
	if w.mute == 0 {
		w.out = append(w.out, b...)
	}
}

// space writes the whitespace at w.i, a space for each byte (no tab or line break: an excerpt is
// one line), and reports whether anything follows it.
func (w *excerptWriter) space() bool {
	j := w.i
	for j < len(w.in) && (w.in[j] == ' ' || w.in[j] == '\t' || w.in[j] == '\n' || w.in[j] == '\r') {
		if w.mute == 0 {
			w.out = append(w.out, ' ')
		}
		j++
	}
	w.i = j
	if j == len(w.in) {
		w.eof = true
		return false
	}
	return true
}

// fail records that in is not JSON from byte at on, and returns false.
func (w *excerptWriter) fail(at int) bool {
	w.errAt = at
	return false
}

// value reads the JSON value at w.i, writing it (or "[redacted]" for it, when secret) to out.
// It returns false when the message ends, out is full, or the value is not JSON (errAt says
// where the text starts).
func (w *excerptWriter) value(secret bool, depth int) bool {
	if !w.space() {
		return false
	}
	start := w.i
	if secret {
		w.emit([]byte(`"` + redacted + `"`))
		w.mute++
		ok := w.value(false, depth)
		w.mute--
		if !ok && !w.stopped() {
			// Not JSON: the value goes at least to where it stops being JSON, then up to the
			// next delimiter, and what follows is text.
			return w.fail(secretEnd(w.in, max(start, w.errAt)))
		}
		return ok
	}
	switch c := w.in[w.i]; {
	case c == '{':
		return w.object(depth + 1)
	case c == '[':
		return w.array(depth + 1)
	case c == '"':
		return w.str()
	case c == '-' || c >= '0' && c <= '9':
		j := w.i
		for j < len(w.in) && strings.IndexByte("+-.0123456789eE", w.in[j]) >= 0 {
			j++
		}
		w.emit(w.in[w.i:j])
		w.i = j
		if j == len(w.in) {
			w.eof = true
			return false
		}
		return true
	case c == 't' || c == 'f' || c == 'n':
		rest := w.in[w.i:]
		for _, lit := range []string{"true", "false", "null"} {
			if len(rest) < len(lit) && lit[:len(rest)] == string(rest) {
				w.eof = true
				return false
			}
			if len(rest) >= len(lit) && string(rest[:len(lit)]) == lit {
				w.emit(rest[:len(lit)])
				w.i += len(lit)
				return true
			}
		}
	}
	return w.fail(start)
}

// object reads the object at w.i; the value of a member whose name is a secret's is muted.
func (w *excerptWriter) object(depth int) bool {
	if depth > excerptDepth {
		return w.fail(w.i)
	}
	w.emit(w.in[w.i : w.i+1])
	w.i++
	for first := true; !w.stopped(); first = false {
		if !w.space() {
			return false
		}
		if first && w.in[w.i] == '}' {
			break
		}
		if w.in[w.i] != '"' {
			return w.fail(w.i)
		}
		at := w.i
		name, ok := w.unquote()
		w.i, w.eof = at, false
		if !w.str() {
			return false
		}
		if !w.space() {
			return false
		}
		if w.in[w.i] != ':' {
			return w.fail(w.i)
		}
		w.emit(w.in[w.i : w.i+1])
		w.i++
		if !w.value(ok && w.r.secretName(name), depth) {
			return false
		}
		if !w.space() {
			return false
		}
		if w.in[w.i] == '}' {
			break
		}
		if w.in[w.i] != ',' {
			return w.fail(w.i)
		}
		w.emit(w.in[w.i : w.i+1])
		w.i++
	}
	if w.stopped() {
		return false
	}
	w.emit(w.in[w.i : w.i+1])
	w.i++
	return true
}

// array reads the array at w.i. Its elements are read like any value: an array of events has
// each event's secrets taken out (a secret's array is muted as a whole by value).
func (w *excerptWriter) array(depth int) bool {
	if depth > excerptDepth {
		return w.fail(w.i)
	}
	w.emit(w.in[w.i : w.i+1])
	w.i++
	for first := true; !w.stopped(); first = false {
		if !w.space() {
			return false
		}
		if first && w.in[w.i] == ']' {
			break
		}
		if !w.value(false, depth) {
			return false
		}
		if !w.space() {
			return false
		}
		if w.in[w.i] == ']' {
			break
		}
		if w.in[w.i] != ',' {
			return w.fail(w.i)
		}
		w.emit(w.in[w.i : w.i+1])
		w.i++
	}
	if w.stopped() {
		return false
	}
	w.emit(w.in[w.i : w.i+1])
	w.i++
	return true
}

// str reads the string at w.i (w.in[w.i] == '"') and writes it: as the message has it when that
// needs no change, else decoded, redacted as text and encoded again, escaping what unsafeRune
// names. A message that ends inside the string sets eof, and what there is of it is written so.
func (w *excerptWriter) str() bool {
	start := w.i
	s, ok := w.unquote()
	if !ok && !w.eof {
		return w.fail(start)
	}
	if w.mute > 0 {
		return ok
	}
	raw := w.in[start:w.i]
	if red := w.r.redactText(s, false); red != s || !printable(raw) || containsAny(s, w.known) {
		w.out = appendQuoted(w.out, red, ok)
	} else {
		w.out = append(w.out, raw...)
	}
	return ok
}

// unquote reads the string at w.i (w.in[w.i] == '"') and returns its content, unescaped, and
// moves w.i past it. ok is false when it is not a valid JSON string (w.i is then at the bad
// escape) or the message ends inside it (w.eof is then set and s is what there is of it).
// Control characters are taken as they are, and invalid UTF-8 becomes U+FFFD.
func (w *excerptWriter) unquote() (s string, ok bool) {
	var b []byte
	i := w.i + 1
	for i < len(w.in) {
		c := w.in[i]
		switch {
		case c == '"':
			w.i = i + 1
			return strings.ToValidUTF8(string(b), "\uFFFD"), true
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(w.in) {
			break
		}
		switch e := w.in[i+1]; e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, n := decodeU(w.in[i:])
			if n == 0 {
				if len(w.in)-i < 6 {
					i = len(w.in) // the message ends inside the escape
					continue
				}
				w.i = i
				return "", false
			}
			b = utf8.AppendRune(b, r)
			i += n
			continue
		default:
			w.i = i
			return "", false
		}
		i += 2
	}
	w.i = len(w.in)
	w.eof = true
	return strings.ToValidUTF8(string(b), "\uFFFD"), false
}

// printable reports whether b is valid UTF-8 without what unsafeRune names.
func printable(b []byte) bool {
	for i := 0; i < len(b); {
		if b[i] >= 0x20 && b[i] < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 || unsafeRune(r) != "" {
			return false
		}
		i += size
	}
	return true
}

// containsAny reports whether s holds one of the known keys.
func containsAny(s string, known []string) bool {
	for _, k := range known {
		if len(k) >= minKnownLen && strings.Contains(s, k) {
			return true
		}
	}
	return false
}

// decodeU decodes the \uXXXX escape (or surrogate pair of two) at the start of b, returning the
// rune and the bytes read; 0 bytes when b does not start with a complete one.
func decodeU(b []byte) (rune, int) {
	hex := func(b []byte) (rune, bool) {
		if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
			return 0, false
		}
		var r rune
		for _, c := range b[2:6] {
			switch {
			case c >= '0' && c <= '9':
				r = r<<4 | rune(c-'0')
			case c >= 'a' && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case c >= 'A' && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	r, ok := hex(b)
	if !ok {
		return 0, 0
	}
	if utf16.IsSurrogate(r) {
		if r2, ok := hex(b[6:]); ok {
			if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
				return d, 12
			}
		}
		return utf8.RuneError, 6
	}
	return r, 6
}

// secretEnd returns where a secret value that is not JSON, starting at in[start], ends: after
// its closing quote when it starts with one, else at the next , } ] or line end.
func secretEnd(in []byte, start int) int {
	i := start
	if i < len(in) && in[i] == '"' {
		for i++; i < len(in) && in[i] != '"'; i++ {
			if in[i] == '\\' {
				i++
			}
		}
		return min(i+1, len(in))
	}
	for i < len(in) && strings.IndexByte(",}]\n\r", in[i]) < 0 {
		i++
	}
	return i
}

// text writes b, which is not JSON, with its secrets (long tokens included) taken out and its
// control characters escaped.
func (w *excerptWriter) text(b []byte) {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	w.out = appendEscapedText(w.out, w.r.redactText(s, true))
}

var (
	// secretShape matches tokens of well-known secret formats wherever they stand.
	secretShape = regexp.MustCompile(`\b(?:(?:sk|rk|pk|api|key)_(?:live|test|prod)_[A-Za-z0-9_\-]{4,}|gh[pousr]_[A-Za-z0-9]{16,}|xox[abposr]-[A-Za-z0-9\-]{8,}|(?:AKIA|ASIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{30,}|whsec_[A-Za-z0-9+/=]{8,}|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]*)?)`)
	// schemeCredential matches the credential after an authorization scheme.
	schemeCredential = regexp.MustCompile(`(?i)\b(bearer|basic|token|apikey|api-key)(\s+)[A-Za-z0-9\-._~+/=:%]+`)
	// longToken matches what may be a secret in text that is not JSON: a long run of the
	// characters keys are made of (kept when it has no digit or no letter).
	longToken = regexp.MustCompile(`[A-Za-z0-9_\-+=~]{20,}`)
)

// redactText takes the secrets out of s: pairs with a secret name, authorization schemes' credentials,
// well-known formats and, when loose (s is not JSON), long tokens.
func (r *Redactor) redactText(s string, loose bool) string {
	if s == "" {
		return s
	}
	s = schemeCredential.ReplaceAllString(s, "${1}${2}"+redacted)
	s = r.redactPairs(s)
	s = secretShape.ReplaceAllString(s, redacted)
	if loose {
		s = longToken.ReplaceAllStringFunc(s, func(t string) string {
			if strings.ContainsAny(t, "0123456789") && strings.IndexFunc(t, func(c rune) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }) >= 0 {
				return redacted
			}
			return t
		})
	}
	return s
}

// redactPairs replaces the value of every name=value or name: value pair in s whose name is a
// secret's (percent-decoded: api%5Fkey is api_key), quoted or not: query strings, form bodies,
// cookies, headers, and JSON-like text that is not JSON.
func (r *Redactor) redactPairs(s string) string {
	if strings.IndexAny(s, "=:") < 0 {
		return s
	}
	var spans [][2]int
	for j := 0; j < len(s); j++ {
		if s[j] != '=' && s[j] != ':' {
			continue
		}
		// The name ends before the separator, after any spaces and quotes.
		e := j
		for e > 0 && j-e < 4 && strings.IndexByte(" \t\"'\\", s[e-1]) >= 0 {
			e--
		}
		b := e
		for b > 0 && nameByte(s[b-1]) {
			b--
		}
		if b == e {
			continue
		}
		name := s[b:e]
		if strings.Contains(name, "%") {
			if u, err := url.QueryUnescape(name); err == nil {
				name = u
			}
		}
		if !r.secretName(name) {
			continue
		}
		// The value starts after any spaces and one quote, and ends at that quote or a delimiter.
		v := j + 1
		for v < len(s) && (s[v] == ' ' || s[v] == '\t') {
			v++
		}
		if v < len(s) && s[v] == '\\' && v+1 < len(s) && s[v+1] == '"' {
			v++
		}
		end := v
		if v < len(s) && (s[v] == '"' || s[v] == '\'') {
			q := s[v]
			v++
			end = v
			for end < len(s) && s[end] != q && s[end] != '\\' {
				end++
			}
		} else {
			for end < len(s) && strings.IndexByte(" \t\r\n\"'&;,#<>\\)]}", s[end]) < 0 {
				end++
			}
		}
		if end > v {
			spans = append(spans, [2]int{v, end})
			j = end - 1
		}
	}
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp[0]])
		b.WriteString(redacted)
		last = sp[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// nameByte reports whether c may be part of a parameter, header or member name.
func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.%[]$", c) >= 0
}

// scrubKnown replaces every occurrence of the known raw keys in s, as they are and as JSON
// writes them, by "[redacted]".
func scrubKnown(s string, known []string) string {
	for _, k := range known {
		if len(k) < minKnownLen {
			continue
		}
		s = strings.ReplaceAll(s, k, redacted)
		if q := string(appendQuoted(nil, k, true)); q[1:len(q)-1] != k {
			s = strings.ReplaceAll(s, q[1:len(q)-1], redacted)
		}
	}
	return s
}

// cutExcerpt cuts s to excerptMax bytes at a character boundary, marking the cut with "…".
func cutExcerpt(s string) string {
	if len(s) <= excerptMax {
		return s
	}
	return strings.ToValidUTF8(s[:excerptMax], "") + "…"
}

// appendQuoted appends s as a JSON string, escaping what unsafeRune names as well as quotes and
// backslashes; closed says whether to write the closing quote.
func appendQuoted(dst []byte, s string, closed bool) []byte {
	dst = append(dst, '"')
	for _, r := range s {
		switch {
		case r == '"':
			dst = append(dst, '\\', '"')
		case r == '\\':
			dst = append(dst, '\\', '\\')
		case r == '\n':
			dst = append(dst, '\\', 'n')
		case r == '\r':
			dst = append(dst, '\\', 'r')
		case r == '\t':
			dst = append(dst, '\\', 't')
		case unsafeRune(r) != "":
			dst = appendU(dst, r)
		default:
			dst = utf8.AppendRune(dst, r)
		}
	}
	if closed {
		dst = append(dst, '"')
	}
	return dst
}

// appendEscapedText appends s with what unsafeRune names written as \uXXXX.
func appendEscapedText(dst []byte, s string) []byte {
	for _, r := range s {
		if unsafeRune(r) != "" {
			dst = appendU(dst, r)
			continue
		}
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

// appendU appends r as JSON's \uXXXX escape (two for a rune beyond the BMP).
func appendU(dst []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	units := []rune{r}
	if r > 0xffff {
		r1, r2 := utf16.EncodeRune(r)
		units = []rune{r1, r2}
	}
	for _, u := range units {
		dst = append(dst, '\\', 'u', hex[u>>12&0xf], hex[u>>8&0xf], hex[u>>4&0xf], hex[u&0xf])
	}
	return dst
}
