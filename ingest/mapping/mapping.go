package mapping

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Record is one authentication event in the contract's terms, extracted but not validated.
// Its string fields are "" when the log has no value (absent, null, or one of the field's absent
// markers). To save allocations, the string fields other than APIKey are slices of one string:
// keeping any of them keeps the others' bytes (a few hundred at most) in memory.
type Record struct {
	TS        time.Time // zero when absent or null; always UTC otherwise
	KeyID     string
	APIKey    string // a raw secret: fingerprint it, never log or store it
	ClientID  string
	Outcome   string
	Status    int // 0 when absent
	IP        string
	UserAgent string
	Method    string
	Route     string
	RequestID string
	Gateway   string
}

// Field is how one contract field is found in a log line. YAML form, e.g.
//
//	ts: {path: started_at, format: epoch_ms}
//	ip: {path: downstream_remote_address, strip_port: true}
//	outcome: {path: auth.result, values: {success: ok, denied: forbidden}}
//	gateway: {value: kong-prod}
//	key_id: {path: apiKeyId, absent: ["-"]}
type Field struct {
	// Path is the dot-separated object keys leading to the value; `\.` is a literal dot in a
	// key, `\\` a literal backslash.
	Path string `yaml:"path"`
	// Value is a constant instead of a path.
	Value string `yaml:"value"`
	// Format is, for ts: auto (default: an RFC 3339 string or a number of epoch milliseconds) |
	// rfc3339 | epoch_ms | epoch_s (a number or a numeric string) | clf ("25/Nov/2026:16:00:00
	// +0000") | layout:<Go time layout>; for status: number (default) | text (a string holding an
	// integer, or a number).
	Format string `yaml:"format"`
	// StripPort, for ip only, reads "203.0.113.7:5432" as 203.0.113.7 and "[2001:db8::1]:443"
	// as 2001:db8::1.
	StripPort bool `yaml:"strip_port"`
	// Values, for outcome only, translates log values to contract outcomes; a log value not
	// listed is an invalid_value error.
	Values map[string]string `yaml:"values"`
	// Absent lists log string values that mean the log has none (AWS API Gateway writes "-" for
	// a $context variable it does not have); they read as if the field were absent.
	Absent []string `yaml:"absent"`
}

// Spec maps contract field names (ts, key_id, api_key, client_id, outcome, status, ip,
// user_agent, method, route, request_id, gateway) to Fields.
type Spec map[string]Field

// Mapping is a compiled Spec; safe for concurrent use, no per-call allocation beyond the strings
// it returns.
type Mapping struct {
	root   node
	fields [numFields]field
}

// The contract's fields, in the contract's order.
const (
	fTS = iota
	fKeyID
	fAPIKey
	fClientID
	fOutcome
	fStatus
	fIP
	fUserAgent
	fMethod
	fRoute
	fRequestID
	fGateway
	numFields
)

const fieldList = "ts, key_id, api_key, client_id, outcome, status, ip, user_agent, method, route, request_id, gateway"

const outcomeList = "ok, invalid_key, expired_key, revoked_key, forbidden, rate_limited or error"

// fieldName is the contract name of field f.
func fieldName(f int) string {
	switch f {
	case fTS:
		return "ts"
	case fKeyID:
		return "key_id"
	case fAPIKey:
		return "api_key"
	case fClientID:
		return "client_id"
	case fOutcome:
		return "outcome"
	case fStatus:
		return "status"
	case fIP:
		return "ip"
	case fUserAgent:
		return "user_agent"
	case fMethod:
		return "method"
	case fRoute:
		return "route"
	case fRequestID:
		return "request_id"
	case fGateway:
		return "gateway"
	}
	return ""
}

// fieldByName is the field called name in the contract.
func fieldByName(name string) (int, bool) {
	for f := range numFields {
		if fieldName(f) == name {
			return f, true
		}
	}
	return 0, false
}

// outcome returns the contract outcome spelled b, without allocating.
func outcome(b []byte) (string, bool) {
	switch string(b) {
	case "ok":
		return "ok", true
	case "invalid_key":
		return "invalid_key", true
	case "expired_key":
		return "expired_key", true
	case "revoked_key":
		return "revoked_key", true
	case "forbidden":
		return "forbidden", true
	case "rate_limited":
		return "rate_limited", true
	case "error":
		return "error", true
	}
	return "", false
}

// tsFormat is how ts is written.
type tsFormat uint8

const (
	tsAuto tsFormat = iota
	tsRFC3339
	tsEpochMS
	tsEpochS
	tsCLF
	tsLayout
)

// clfLayout is the Common Log Format time, as in NGINX $time_local and AWS $context.requestTime.
const clfLayout = "02/Jan/2006:15:04:05 -0700"

// field is a compiled Field.
type field struct {
	set      bool
	constant bool
	value    string   // the constant
	status   int      // the constant, for status
	path     string   // as configured, for errors
	segs     []string // path split into keys
	ts       tsFormat
	layout   string
	text     bool // status: a string holding an integer is accepted too
	strip    bool
	values   map[string]string
	valueSet string // the keys of values, for errors
	absent   []string
	secret   bool // the value is (or is at the path of) api_key: never quote it
}

// node is one key of the compiled paths. Fields are bit sets of contract fields.
type node struct {
	key      string
	children []*node
	here     uint16 // fields whose value is this key's value
	under    uint16 // fields at this key or below it
	level    int    // number of keys from the top-level object to this one
	table    []slot // children by keyHash; see index
}

func (n *node) insert(segs []string, f int) {
	n.under |= 1 << f
	if len(segs) == 0 {
		n.here |= 1 << f
		return
	}
	for _, c := range n.children {
		if c.key == segs[0] {
			c.insert(segs[1:], f)
			return
		}
	}
	c := &node{key: segs[0], level: n.level + 1}
	n.children = append(n.children, c)
	c.insert(segs[1:], f)
}

// Compile checks spec and compiles it. Every problem is reported with its path below at (for
// at "ingest.mappings.mygw": `ingest.mappings.mygw.ts.format: "epoch_us": want auto, rfc3339,
// epoch_ms, epoch_s, clf or layout:<Go layout>`); all problems are returned, sorted and joined.
func Compile(at string, spec Spec) (*Mapping, error) {
	var problems []string
	add := func(path, format string, args ...any) {
		problems = append(problems, join(at, path)+": "+fmt.Sprintf(format, args...))
	}
	m := &Mapping{}
	for name, sf := range spec {
		f, ok := fieldByName(name)
		if !ok {
			add(name, "not a field of the event contract (want one of %s)", fieldList)
			continue
		}
		cf, ok := compileField(f, sf, func(attr, format string, args ...any) {
			add(join(name, attr), format, args...)
		})
		if ok {
			m.fields[f] = cf
		}
	}
	if _, ok := spec["ts"]; !ok {
		add("ts", "missing: the event contract requires a timestamp; set ts.path")
	}
	_, hasKeyID := spec["key_id"]
	_, hasAPIKey := spec["api_key"]
	if !hasKeyID && !hasAPIKey {
		add("key_id", "missing: the spec needs key_id or api_key (or both) to tell which key was used")
	}
	// A field stored as the log wrote it, read from where the raw key is, would store the key.
	if key, ok := spec["api_key"]; ok && key.Path != "" {
		for name, sf := range spec {
			if f, ok := fieldByName(name); ok && stored(f) && sf.Path == key.Path {
				add(join(name, "path"), "%q is api_key's path too: the raw key would be stored as %s; read %s from elsewhere or leave it out", sf.Path, name, name)
			}
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		errs := make([]error, len(problems))
		for i, p := range problems {
			errs[i] = errors.New(p)
		}
		return nil, errors.Join(errs...)
	}
	key := m.fields[fAPIKey]
	for f := range numFields {
		cf := &m.fields[f]
		cf.secret = f == fAPIKey || (key.set && !key.constant && !cf.constant && cf.path != "" && slices.Equal(cf.segs, key.segs))
		if cf.set && !cf.constant {
			m.root.insert(cf.segs, f)
		}
	}
	m.root.index()
	return m, nil
}

// stored reports whether contract field f is stored as the log wrote it (rather than parsed
// into a time, a number or one of the outcomes).
func stored(f int) bool {
	switch f {
	case fKeyID, fClientID, fIP, fUserAgent, fMethod, fRoute, fRequestID, fGateway:
		return true
	}
	return false
}

// SecretPaths returns the paths (their keys, unescaped) where the log holds secrets: api_key's,
// when it is read from the log. Whatever keeps a message that failed to decode must take out
// the values there, whatever their key is called.
func (m *Mapping) SecretPaths() [][]string {
	if f := m.fields[fAPIKey]; f.set && !f.constant {
		return [][]string{slices.Clone(f.segs)}
	}
	return nil
}

// compileField checks sf as the spec of contract field f, reporting problems through add with
// the attribute they concern ("" for the field itself).
func compileField(f int, sf Field, add func(attr, format string, args ...any)) (field, bool) {
	n := 0
	report := func(attr, format string, args ...any) {
		n++
		add(attr, format, args...)
	}
	cf := field{set: true, path: sf.Path, strip: sf.StripPort, absent: slices.Clone(sf.Absent)}
	switch {
	case sf.Path != "" && sf.Value != "":
		report("", "both path and value are set; set path (where the log has it) or value (a constant), not both")
	case sf.Path == "" && sf.Value == "":
		report("", "neither path nor value is set; set path (where the log has it) or value (a constant)")
	case sf.Path != "":
		segs, err := splitPath(sf.Path)
		if err != "" {
			report("path", "%q: %s", sf.Path, err)
		}
		cf.segs = segs
	default:
		cf.constant, cf.value = true, sf.Value
	}
	pathOnly := func(attr string) {
		if cf.constant {
			report(attr, "applies to a path, not to a constant value; remove it")
		}
	}

	// format
	switch f {
	case fTS:
		if cf.constant {
			report("value", "ts cannot be a constant; set ts.path to where the log has its time")
		}
		format, layout, ok := parseTSFormat(sf.Format)
		if !ok {
			report("format", "%q: want auto, rfc3339, epoch_ms, epoch_s, clf or layout:<Go layout>", sf.Format)
		} else if format == tsLayout {
			if msg := checkLayout(layout); msg != "" {
				report("format", "%q: %s", sf.Format, msg)
			}
		}
		cf.ts, cf.layout = format, layout
	case fStatus:
		switch sf.Format {
		case "", "number":
		case "text":
			cf.text = true
		default:
			report("format", "%q: want number or text", sf.Format)
		}
		if sf.Format != "" {
			pathOnly("format")
		}
		if cf.constant {
			st, err := strconv.Atoi(sf.Value)
			if err != nil {
				report("value", "%q: want an integer HTTP status such as 200", sf.Value)
			}
			cf.status = st
		}
	default:
		if sf.Format != "" {
			report("format", "only ts and status take a format; remove it")
		}
	}

	// strip_port
	if sf.StripPort {
		if f != fIP {
			report("strip_port", "only ip takes strip_port; remove it")
		} else {
			pathOnly("strip_port")
		}
	}

	// values
	if f == fOutcome && cf.constant {
		if _, ok := outcome([]byte(sf.Value)); !ok {
			report("value", "%q: not a contract outcome (want %s)", sf.Value, outcomeList)
		}
	}
	if sf.Values != nil {
		if f != fOutcome {
			report("values", "only outcome takes values; remove it")
		} else {
			pathOnly("values")
			if len(sf.Values) == 0 {
				report("values", "empty: list the log's outcome values, or remove values to take them as they are")
			}
			keys := make([]string, 0, len(sf.Values))
			for k, v := range sf.Values {
				keys = append(keys, strconv.Quote(k))
				if _, ok := outcome([]byte(v)); !ok {
					report("values."+k, "%q: not a contract outcome (want %s)", v, outcomeList)
				}
			}
			slices.Sort(keys)
			cf.values, cf.valueSet = maps.Clone(sf.Values), strings.Join(keys, ", ")
		}
	}

	// absent
	if len(sf.Absent) > 0 {
		pathOnly("absent")
	}
	return cf, n == 0
}

func parseTSFormat(s string) (tsFormat, string, bool) {
	switch s {
	case "", "auto":
		return tsAuto, "", true
	case "rfc3339":
		return tsRFC3339, "", true
	case "epoch_ms":
		return tsEpochMS, "", true
	case "epoch_s":
		return tsEpochS, "", true
	case "clf":
		return tsCLF, "", true
	}
	if layout, ok := strings.CutPrefix(s, "layout:"); ok {
		return tsLayout, layout, true
	}
	return 0, "", false
}

// checkLayout says what is wrong with a Go time layout, or "" when it reads back a full date.
func checkLayout(layout string) string {
	ref := time.Date(2026, time.November, 25, 16, 7, 8, 0, time.UTC)
	t, err := time.Parse(layout, ref.Format(layout))
	if err != nil || t.Year() != ref.Year() || t.Month() != ref.Month() || t.Day() != ref.Day() {
		return "not a Go time layout with year, month and day (write it with Go's reference time, e.g. layout:2006-01-02 15:04:05.000)"
	}
	return ""
}

// splitPath splits a path at its unescaped dots.
func splitPath(p string) ([]string, string) {
	var segs []string
	var seg strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\':
			if i+1 == len(p) || (p[i+1] != '.' && p[i+1] != '\\') {
				return nil, `a backslash must be followed by . (a dot inside a key) or \ (a backslash)`
			}
			i++
			seg.WriteByte(p[i])
		case '.':
			if seg.Len() == 0 {
				return nil, `empty key (a dot at an end or two dots in a row); write \. for a dot inside a key`
			}
			segs = append(segs, seg.String())
			seg.Reset()
		default:
			seg.WriteByte(c)
		}
	}
	if seg.Len() == 0 {
		return nil, `empty key (a dot at an end or two dots in a row); write \. for a dot inside a key`
	}
	return append(segs, seg.String()), ""
}

func join(at, name string) string {
	switch {
	case at == "":
		return name
	case name == "":
		return at
	}
	return at + "." + name
}
