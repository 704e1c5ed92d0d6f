package mapping

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Reasons an Extract fails, as stored in dead_letters.reason.
const (
	ReasonInvalidUTF8  = "invalid_utf8"
	ReasonInvalidJSON  = "invalid_json"
	ReasonWrongType    = "wrong_type"
	ReasonInvalidValue = "invalid_value"
)

// Error says why a line cannot be read.
type Error struct {
	Reason string // one of the Reason constants
	Field  string // the contract field concerned; "" when it is the whole message
	// Detail names the contract field and the log path, e.g. `status (response.status): got a
	// string, want a number`. It never holds the value of api_key; other values are quoted,
	// truncated to 40 bytes.
	Detail string
}

func (e *Error) Error() string { return e.Reason + ": " + e.Detail }

// Extract reads one log line. Its errors are *Error. A line that is not valid UTF-8 or not
// valid JSON (as json.Valid judges it, nesting limit included) is rejected even where the bad
// part is in a key the mapping skips; a valid JSON value that is not an object is a wrong_type
// error, and so is a value on a field's path that is neither an object nor null. When a key
// appears twice in an object, the last one wins, and it replaces everything below the first.
// Only the first field that cannot be read is reported, in the contract's order.
func (m *Mapping) Extract(msg []byte) (Record, error) { return m.ExtractShared(msg, nil) }

// ExtractShared is Extract, with the values of the fields that repeat from message to message
// (key and client ids, user agents, routes, gateways) taken from texts when it holds them, and
// added to it when not, so that the records of many messages share one string for each such
// value rather than each holding a copy. texts may be nil.
func (m *Mapping) ExtractShared(msg []byte, texts *Texts) (Record, error) {
	if !utf8.Valid(msg) {
		return Record{}, &Error{Reason: ReasonInvalidUTF8, Detail: "message is not valid UTF-8"}
	}
	var caps [numFields]capture
	s := scanner{b: msg, caps: &caps}
	i := s.ws(0)
	object := i < len(msg) && msg[i] == '{'
	if object {
		i = s.object(i, &m.root, 1)
	} else {
		i = s.value(i, 0)
	}
	if i >= 0 {
		if i = s.ws(i); i < len(msg) {
			s.fail(i, "more after the JSON value")
		}
	}
	if s.err != "" {
		return Record{}, &Error{Reason: ReasonInvalidJSON, Detail: "invalid JSON at byte " + strconv.Itoa(s.at) + ": " + s.err}
	}
	if !object {
		k := kindAbsent
		switch c := msg[s.ws(0)]; {
		case c == '[':
			k = kindArray
		case c == '"':
			k = kindString
		case c == 't' || c == 'f':
			k = kindBool
		case c != 'n':
			k = kindNumber
		}
		return Record{}, &Error{Reason: ReasonWrongType, Detail: "message is " + k.String() + ", want a JSON object"}
	}

	var r Record
	var err *Error
	// The string fields but api_key become one string: their bytes go to text, one after the
	// other, and each field is a slice of it.
	var scratch [512]byte
	text := scratch[:0]
	var spans [numFields][2]int
	var share [numFields]bool // to add to texts
	for f := range numFields {
		cf := &m.fields[f]
		if !cf.set {
			continue
		}
		c := caps[f]
		switch f {
		case fTS:
			r.TS, err = cf.timestamp(msg, c)
		case fStatus:
			r.Status, err = cf.statusCode(msg, c)
		case fOutcome:
			r.Outcome, err = cf.outcome(msg, c)
		default:
			if cf.constant {
				*r.text(f) = cf.value
				continue
			}
			start := len(text)
			var ok bool
			if text, ok, err = cf.appendRaw(text, msg, c, "a string"); !ok {
				break
			}
			from, to := start, len(text)
			if cf.strip {
				from, to = stripPort(text, from, to)
			}
			v := text[from:to]
			switch f {
			case fAPIKey: // kept apart so that nothing else holds on to the secret
				r.APIKey = string(v)
				text = text[:start]
				continue
			case fMethod:
				if name, ok := method(v); ok {
					r.Method = name
					text = text[:start]
					continue
				}
			}
			if texts != nil && repeats(f) {
				if s, ok := texts.m[string(v)]; ok {
					*r.text(f) = s
					text = text[:start]
					continue
				}
				share[f] = true
			}
			spans[f] = [2]int{from, to}
		}
		if err != nil {
			err.Field = fieldName(f)
			err.Detail = fieldName(f) + " (" + cf.path + "): " + err.Detail
			return Record{}, err
		}
	}
	if len(text) > 0 {
		all := string(text)
		for f, sp := range spans {
			if sp[1] > sp[0] {
				*r.text(f) = all[sp[0]:sp[1]]
				if share[f] {
					texts.add(*r.text(f))
				}
			}
		}
	}
	return r, nil
}

// Texts holds values Extract read, for ExtractShared to hand out again. It is not safe for
// concurrent use.
type Texts struct {
	m map[string]string
}

// maxTexts bounds a Texts: when full, it starts again empty. A few thousand values cover the keys,
// clients, user agents, routes and gateways of most deployments' busy traffic, in about a
// megabyte at most (a value keeps the text of the message it was first read from, a few hundred
// bytes).
const maxTexts = 4096

// NewTexts returns an empty Texts.
func NewTexts() *Texts { return &Texts{m: make(map[string]string)} }

func (t *Texts) add(s string) {
	if len(t.m) >= maxTexts {
		clear(t.m)
	}
	t.m[s] = s
}

// repeats reports whether the values of contract field f repeat from message to message, as
// those of key_id, client_id, user_agent, method, route and gateway do; request_id and ip do not.
func repeats(f int) bool {
	switch f {
	case fKeyID, fClientID, fUserAgent, fMethod, fRoute, fGateway:
		return true
	}
	return false
}

// RawKey returns the raw key msg holds at api_key's path, as far as msg can be read: also when
// another field of it, or the JSON after the key, is bad, so that the key can be taken out of what
// is kept of a message that failed. It is "" when msg holds no string there (or the mapping
// reads no api_key from the log). Like Record.APIKey, never log or store it.
func (m *Mapping) RawKey(msg []byte) string {
	f := &m.fields[fAPIKey]
	if !f.set || f.constant {
		return ""
	}
	var caps [numFields]capture
	s := scanner{b: msg, caps: &caps}
	if i := s.ws(0); i < len(msg) && msg[i] == '{' {
		s.object(i, &m.root, 1)
	}
	c := caps[fAPIKey]
	if c.kind != kindString {
		return ""
	}
	if c.esc {
		return string(unescape(nil, msg[c.start:c.end]))
	}
	return string(msg[c.start:c.end])
}

// text is the Record's field for the contract's string field f.
func (r *Record) text(f int) *string {
	switch f {
	case fKeyID:
		return &r.KeyID
	case fAPIKey:
		return &r.APIKey
	case fClientID:
		return &r.ClientID
	case fIP:
		return &r.IP
	case fUserAgent:
		return &r.UserAgent
	case fMethod:
		return &r.Method
	case fRoute:
		return &r.Route
	case fRequestID:
		return &r.RequestID
	}
	return &r.Gateway
}

// appendRaw appends the content of string capture c, unescaped, to dst. ok is false, and dst
// as it was, when there is no value: c absent or null, or one of f's absent markers. A capture
// of another kind is a wrong_type error saying that want was expected.
func (f *field) appendRaw(dst, msg []byte, c capture, want string) (_ []byte, ok bool, _ *Error) {
	switch c.kind {
	case kindAbsent:
		return dst, false, nil
	case kindString:
	case kindNotObject:
		return dst, false, &Error{Reason: ReasonWrongType, Detail: strings.Join(f.segs[:c.level], ".") + " is " + c.got.String() + ", want an object"}
	default:
		return dst, false, &Error{Reason: ReasonWrongType, Detail: "got " + c.kind.String() + ", want " + want}
	}
	start := len(dst)
	if c.esc {
		dst = unescape(dst, msg[c.start:c.end])
	} else {
		dst = append(dst, msg[c.start:c.end]...)
	}
	for _, a := range f.absent {
		if string(dst[start:]) == a {
			return dst[:start], false, nil
		}
	}
	return dst, true, nil
}

// method returns the common HTTP methods without allocating.
func method(b []byte) (string, bool) {
	switch string(b) {
	case "GET":
		return "GET", true
	case "POST":
		return "POST", true
	case "PUT":
		return "PUT", true
	case "PATCH":
		return "PATCH", true
	case "DELETE":
		return "DELETE", true
	case "HEAD":
		return "HEAD", true
	case "OPTIONS":
		return "OPTIONS", true
	}
	return "", false
}

func (f *field) outcome(msg []byte, c capture) (string, *Error) {
	if f.constant {
		return f.value, nil
	}
	var buf [64]byte
	b, ok, err := f.appendRaw(buf[:0], msg, c, "a string")
	if !ok || len(b) == 0 {
		return "", err
	}
	if f.values != nil {
		if o, ok := f.values[string(b)]; ok {
			return o, nil
		}
		return "", &Error{Reason: ReasonInvalidValue, Detail: f.quote(b) + " is not in values (want one of " + f.valueSet + ")"}
	}
	if o, ok := outcome(b); ok {
		return o, nil
	}
	return string(b), nil
}

func (f *field) statusCode(msg []byte, c capture) (int, *Error) {
	if f.constant {
		return f.status, nil
	}
	want := "a number"
	if f.text {
		want = "a number or a string holding one"
	}
	if c.kind == kindNumber {
		return f.integer(msg[c.start:c.end])
	}
	var buf [64]byte
	b, ok, err := f.appendRaw(buf[:0], msg, c, want)
	if !ok {
		return 0, err
	}
	if !f.text {
		return 0, &Error{Reason: ReasonWrongType, Detail: `got a string, want a number (set format: text for a status written as "200")`}
	}
	if n, ok := atoi(b); ok {
		return n, nil
	}
	return 0, &Error{Reason: ReasonInvalidValue, Detail: f.quote(b) + " is not an integer"}
}

// integer reads a JSON number that must be an integer (200, also 200.0 or 2e2).
func (f *field) integer(b []byte) (int, *Error) {
	if n, ok := atoi(b); ok {
		return n, nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err == nil && v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return int(v), nil
	}
	return 0, &Error{Reason: ReasonInvalidValue, Detail: f.quote(b) + " is not an integer"}
}

// atoi reads an optionally negative decimal integer of at most 18 digits.
func atoi(b []byte) (int, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func (f *field) timestamp(msg []byte, c capture) (time.Time, *Error) {
	if c.kind == kindNumber {
		switch f.ts {
		case tsAuto, tsEpochMS:
			return f.epoch(msg[c.start:c.end], 1000)
		case tsEpochS:
			return f.epoch(msg[c.start:c.end], 1)
		}
		return time.Time{}, &Error{Reason: ReasonWrongType, Detail: "got a number, want a string (set format: epoch_ms or epoch_s for a number)"}
	}
	want := "a string"
	switch f.ts {
	case tsAuto:
		want = "an RFC 3339 string or a number of epoch milliseconds"
	case tsEpochMS, tsEpochS:
		want = "a number or a string holding one"
	}
	var buf [64]byte
	b, ok, err := f.appendRaw(buf[:0], msg, c, want)
	if !ok {
		return time.Time{}, err
	}
	var t time.Time
	var perr error
	switch f.ts {
	case tsAuto, tsRFC3339:
		t, perr = time.Parse(time.RFC3339Nano, string(b))
		if perr != nil {
			hint := ""
			if f.ts == tsAuto && numberEnd(b, 0) == len(b) {
				hint = " (set format: epoch_ms or epoch_s for a number in a string)"
			}
			return time.Time{}, &Error{Reason: ReasonInvalidValue, Detail: f.quote(b) + " is not an RFC 3339 time" + hint}
		}
	case tsEpochMS:
		return f.epoch(b, 1000)
	case tsEpochS:
		return f.epoch(b, 1)
	case tsCLF:
		t, perr = time.Parse(clfLayout, string(b))
		if perr != nil {
			return time.Time{}, &Error{Reason: ReasonInvalidValue, Detail: f.quote(b) + " is not a CLF time such as 25/Nov/2026:16:00:00 +0000"}
		}
	case tsLayout:
		t, perr = time.Parse(f.layout, string(b))
		if perr != nil {
			return time.Time{}, &Error{Reason: ReasonInvalidValue, Detail: f.quote(b) + " does not match layout " + strconv.Quote(f.layout)}
		}
	}
	return t.UTC(), nil
}

// epoch reads a decimal number of 1/perSec seconds since the Unix epoch, exactly to the
// nanosecond when written without an exponent.
func (f *field) epoch(b []byte, perSec int64) (time.Time, *Error) {
	bad := func() (time.Time, *Error) {
		unit := "milliseconds"
		if perSec == 1 {
			unit = "seconds"
		}
		return time.Time{}, &Error{Reason: ReasonInvalidValue, Detail: f.quote(b) + " is not a time in epoch " + unit}
	}
	if numberEnd(b, 0) != len(b) {
		return bad()
	}
	if bytes.IndexAny(b, "eE") >= 0 {
		v, err := strconv.ParseFloat(string(b), 64)
		if err != nil || math.Abs(v) >= 9e15*float64(perSec) {
			return bad()
		}
		whole := math.Floor(v)
		n, frac := int64(whole), int64(math.Round((v-whole)*float64(1e9/perSec)))
		return time.Unix(n/perSec, n%perSec*(1e9/perSec)+frac).UTC(), nil
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	whole, frac, _ := bytes.Cut(b, []byte{'.'})
	n, ok := atoi(whole)
	if !ok {
		return bad()
	}
	sec, ns := int64(n)/perSec, int64(n)%perSec*(1e9/perSec)
	scale := 1e9 / perSec / 10 // nanoseconds of the first fraction digit
	for _, c := range frac {
		if scale == 0 {
			break
		}
		ns += int64(c-'0') * scale
		scale /= 10
	}
	if neg {
		sec, ns = -sec, -ns
	}
	return time.Unix(sec, ns).UTC(), nil
}

// quote quotes b for an error, truncated to 40 bytes, unless it may be a secret.
func (f *field) quote(b []byte) string {
	if f.secret {
		return "the value"
	}
	if len(b) > 40 {
		cut := 40
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		return strconv.Quote(string(b[:cut])) + "…"
	}
	return strconv.Quote(string(b))
}

// stripPort returns where the address of "host:port" or "[host]:port" lies in b[from:to]; any
// other value is returned whole (a bare IPv6 address has more than one colon).
func stripPort(b []byte, from, to int) (int, int) {
	v := b[from:to]
	if len(v) > 0 && v[0] == '[' {
		if end := bytes.IndexByte(v, ']'); end > 0 {
			return from + 1, from + end
		}
		return from, to
	}
	if i := bytes.IndexByte(v, ':'); i >= 0 && bytes.IndexByte(v[i+1:], ':') < 0 {
		return from, from + i
	}
	return from, to
}
