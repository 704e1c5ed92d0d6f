package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func mustCompile(t testing.TB, spec Spec) *Mapping {
	t.Helper()
	m, err := Compile("test", spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func keywatch(t testing.TB) *Mapping {
	spec, _ := Builtin("keywatch")
	return mustCompile(t, spec)
}

var ts0 = time.Date(2026, 11, 25, 16, 0, 0, 123_000_000, time.UTC)

func TestExtractKeywatch(t *testing.T) {
	m := keywatch(t)
	for _, tc := range []struct {
		name string
		msg  string
		want Record
	}{
		{
			name: "all fields",
			msg: `{"ts": "2026-11-25T16:00:00.123Z", "key_id": "kid_live_2f9a", "api_key": "sk_live_abc",
				"client_id": "acme-billing", "outcome": "ok", "status": 200, "ip": "203.0.113.7",
				"user_agent": "acme-sdk/2.1", "method": "GET", "route": "/v1/prices", "request_id": "r-1",
				"gateway": "edge-eu-1"}`,
			want: Record{TS: ts0, KeyID: "kid_live_2f9a", APIKey: "sk_live_abc", ClientID: "acme-billing",
				Outcome: "ok", Status: 200, IP: "203.0.113.7", UserAgent: "acme-sdk/2.1", Method: "GET",
				Route: "/v1/prices", RequestID: "r-1", Gateway: "edge-eu-1"},
		},
		{
			name: "epoch milliseconds",
			msg:  `{"ts": 1795622400123, "key_id": "k"}`,
			want: Record{TS: ts0, KeyID: "k"},
		},
		{
			name: "epoch milliseconds with a fraction",
			msg:  `{"ts": 1795622400123.456789, "key_id": "k"}`,
			want: Record{TS: ts0.Add(456789 * time.Nanosecond), KeyID: "k"},
		},
		{
			name: "epoch milliseconds with an exponent",
			msg:  `{"ts": 1.795622400123e12, "key_id": "k"}`,
			want: Record{TS: ts0, KeyID: "k"},
		},
		{
			name: "offset converted to UTC",
			msg:  `{"ts": "2026-11-25T17:00:00.123+01:00", "key_id": "k"}`,
			want: Record{TS: ts0, KeyID: "k"},
		},
		{
			name: "null fields",
			msg: `{"ts": null, "key_id": null, "api_key": null, "client_id": null, "outcome": null,
				"status": null, "ip": null, "user_agent": null, "method": null, "route": null,
				"request_id": null, "gateway": null}`,
			want: Record{},
		},
		{
			name: "empty object",
			msg:  ` {} `,
			want: Record{},
		},
		{
			name: "escaped keys",
			msg:  `{"\u0074s": "2026-11-25T16:00:00.123Z", "key\u005fid": "k", "client\/id": "c", "st\u0061tus": 401}`,
			want: Record{TS: ts0, KeyID: "k", Status: 401},
		},
		{
			name: "escaped strings",
			msg: `{"ts": "2026-11-25T16:00:00.123Z", "key_id": "k\"1\\2\/3",
				"user_agent": "caf\u00e9 \ud83d\ude00 \u2603\ttab\n", "route": "/\u0070rices",
				"client_id": "lone \ud800 and \udc00 and \ud800\u0041"}`,
			want: Record{TS: ts0, KeyID: `k"1\2/3`, UserAgent: "café 😀 ☃\ttab\n", Route: "/prices",
				ClientID: "lone \uFFFD and \uFFFD and \uFFFDA"},
		},
		{
			name: "escaped method and outcome",
			msg:  `{"ts": 1795622400123, "key_id": "k", "method": "G\u0045T", "outcome": "f\u006frbidden"}`,
			want: Record{TS: ts0, KeyID: "k", Method: "GET", Outcome: "forbidden"},
		},
		{
			name: "raw UTF-8",
			msg:  `{"ts": 1795622400123, "key_id": "ключ-🔑", "user_agent": "日本語"}`,
			want: Record{TS: ts0, KeyID: "ключ-🔑", UserAgent: "日本語"},
		},
		{
			name: "duplicate keys, last wins",
			msg:  `{"ts": 1, "key_id": "first", "status": 500, "ts": 1795622400123, "key_id": "second", "status": null}`,
			want: Record{TS: ts0, KeyID: "second"},
		},
		{
			name: "unknown outcome passes through without values",
			msg:  `{"ts": 1795622400123, "key_id": "k", "outcome": "weird"}`,
			want: Record{TS: ts0, KeyID: "k", Outcome: "weird"},
		},
		{
			name: "integral status written as a float",
			msg:  `{"ts": 1795622400123, "key_id": "k", "status": 2.0e2}`,
			want: Record{TS: ts0, KeyID: "k", Status: 200},
		},
		{
			name: "skipped values of every kind",
			msg: `{"a": {"b": [1, -2.5e-3, true, false, null, "x\"y", {"c": {}}, []]}, "ts": 1795622400123,
				"n": -0, "e": 1E+2, "s": "\u00e9\b\f\n\r\t", "key_id": "k", "z": [[[[]]]]}`,
			want: Record{TS: ts0, KeyID: "k"},
		},
		{
			name: "whitespace everywhere",
			msg:  "\r\n\t {\n\t\"ts\"\n:\r1795622400123 ,\n \"key_id\" : \"k\"\n}\n\t ",
			want: Record{TS: ts0, KeyID: "k"},
		},
		{
			name: "long strings",
			msg:  `{"ts": 1795622400123, "key_id": "k", "user_agent": "` + strings.Repeat("abcdefgh", 100) + `"}`,
			want: Record{TS: ts0, KeyID: "k", UserAgent: strings.Repeat("abcdefgh", 100)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Extract([]byte(tc.msg))
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			checkRecord(t, got, tc.want)
		})
	}
}

func checkRecord(t *testing.T, got, want Record) {
	t.Helper()
	if !got.TS.Equal(want.TS) || (!got.TS.IsZero() && got.TS.Location() != time.UTC) {
		t.Errorf("TS = %v, want %v in UTC", got.TS, want.TS)
	}
	got.TS, want.TS = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestExtractErrors(t *testing.T) {
	m := keywatch(t)
	outcomes := mustCompile(t, Spec{
		"ts":      {Path: "ts"},
		"key_id":  {Path: "key_id"},
		"outcome": {Path: "auth.result", Values: map[string]string{"success": "ok", "denied": "forbidden"}},
	})
	secret := mustCompile(t, Spec{"ts": {Path: "apikey"}, "api_key": {Path: "apikey"}})
	for _, tc := range []struct {
		name   string
		m      *Mapping
		msg    string
		reason string
		field  string
		detail string // a part of Detail
	}{
		{"empty", m, ``, ReasonInvalidJSON, "", "byte 0"},
		{"only space", m, "  \n", ReasonInvalidJSON, "", "byte 3"},
		{"not JSON", m, `ts=2026-11-25 key_id=k`, ReasonInvalidJSON, "", "byte 0"},
		{"truncated", m, `{"ts": "2026`, ReasonInvalidJSON, "", "unterminated string"},
		{"truncated after a value", m, `{"ts": 1795622400123`, ReasonInvalidJSON, "", "unterminated object"},
		{"truncated after a key", m, `{"ts"`, ReasonInvalidJSON, "", "colon"},
		{"trailing garbage", m, `{"ts": 1, "key_id": "k"} x`, ReasonInvalidJSON, "", "more after"},
		{"two objects", m, `{"ts": 1}{"ts": 2}`, ReasonInvalidJSON, "", "more after"},
		{"top-level array", m, `[{"ts": 1795622400123, "key_id": "k"}]`, ReasonWrongType, "", "an array, want a JSON object"},
		{"top-level string", m, `"hello"`, ReasonWrongType, "", "a string"},
		{"top-level null", m, `null`, ReasonWrongType, "", "null"},
		{"invalid top-level array", m, `[1,]`, ReasonInvalidJSON, "", "want a value"},
		{"invalid UTF-8", m, "{\"ts\": 1, \"key_id\": \"k\xff\"}", ReasonInvalidUTF8, "", "UTF-8"},
		{"invalid UTF-8 in a skipped key", m, "{\"x\xc3\": 1}", ReasonInvalidUTF8, "", "UTF-8"},
		{"control character in a string", m, "{\"ts\": 1, \"key_id\": \"a\tb\"}", ReasonInvalidJSON, "", "control character"},
		{"control character in a skipped string", m, "{\"other\": \"a\nb\"}", ReasonInvalidJSON, "", "control character"},
		{"bad escape", m, `{"other": "\x41"}`, ReasonInvalidJSON, "", "invalid escape"},
		{"short \\u escape", m, `{"other": "\u12"}`, ReasonInvalidJSON, "", "4 hex digits"},
		{"invalid literal", m, `{"other": tru}`, ReasonInvalidJSON, "", "invalid literal"},
		{"invalid literal in a field", m, `{"status": nul}`, ReasonInvalidJSON, "", "invalid literal"},
		{"leading zero", m, `{"other": 012}`, ReasonInvalidJSON, "", "want a comma"},
		{"bare minus", m, `{"other": -}`, ReasonInvalidJSON, "", "invalid number"},
		{"fraction without digits", m, `{"other": 1.}`, ReasonInvalidJSON, "", "invalid number"},
		{"exponent without digits", m, `{"status": 1e}`, ReasonInvalidJSON, "", "invalid number"},
		{"plus sign", m, `{"other": +1}`, ReasonInvalidJSON, "", "want a value"},
		{"missing colon", m, `{"ts" 1}`, ReasonInvalidJSON, "", "colon"},
		{"missing comma", m, `{"ts": 1 "key_id": "k"}`, ReasonInvalidJSON, "", "comma"},
		{"trailing comma", m, `{"ts": 1,}`, ReasonInvalidJSON, "", "string key"},
		{"unquoted key", m, `{ts: 1}`, ReasonInvalidJSON, "", "string key"},
		{"single quotes", m, `{'ts': 1}`, ReasonInvalidJSON, "", "string key"},
		{"unterminated nested array", m, `{"other": [1, [2}`, ReasonInvalidJSON, "", "comma or ]"},
		{"JSON error beats a type error", m, `{"status": "200", "x": }`, ReasonInvalidJSON, "", "want a value"},
		{"status as a string", m, `{"status": "200"}`, ReasonWrongType, "status", `status (status): got a string, want a number`},
		{"status not an integer", m, `{"status": 200.5}`, ReasonInvalidValue, "status", `"200.5" is not an integer`},
		{"key_id a number", m, `{"key_id": 42}`, ReasonWrongType, "key_id", "key_id (key_id): got a number, want a string"},
		{"key_id an object", m, `{"key_id": {"id": "k"}}`, ReasonWrongType, "key_id", "got an object, want a string"},
		{"api_key an array", m, `{"api_key": ["k"]}`, ReasonWrongType, "api_key", "got an array, want a string"},
		{"method a boolean", m, `{"method": true}`, ReasonWrongType, "method", "got a boolean"},
		{"ts an object", m, `{"ts": {}}`, ReasonWrongType, "ts", "ts (ts): got an object, want an RFC 3339 string or a number of epoch milliseconds"},
		{"ts not RFC 3339", m, `{"ts": "25/Nov/2026:16:00:00 +0000"}`, ReasonInvalidValue, "ts", `"25/Nov/2026:16:00:00 +0000" is not an RFC 3339 time`},
		{"ts epoch in a string", m, `{"ts": "1795622400123"}`, ReasonInvalidValue, "ts", "format: epoch_ms"},
		{"ts long value truncated", m, `{"ts": "` + strings.Repeat("x", 100) + `"}`, ReasonInvalidValue, "ts", `"` + strings.Repeat("x", 40) + `"…`},
		{"first bad field reported", m, `{"status": "x", "ts": []}`, ReasonWrongType, "ts", "ts (ts)"},
		{"unknown outcome value", outcomes, `{"ts": 1, "key_id": "k", "auth": {"result": "blocked"}}`, ReasonInvalidValue, "outcome",
			`outcome (auth.result): "blocked" is not in values (want one of "denied", "success")`},
		{"outcome value a contract outcome but not in values", outcomes, `{"auth": {"result": "ok"}}`, ReasonInvalidValue, "outcome", `"ok" is not in values`},
		{"outcome parent not an object", outcomes, `{"auth": "success"}`, ReasonWrongType, "outcome", "outcome (auth.result): auth is a string, want an object"},
		{"secret never quoted", secret, `{"apikey": "sk_live_secret"}`, ReasonInvalidValue, "ts", "ts (apikey): the value is not an RFC 3339 time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.m.Extract([]byte(tc.msg))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Extract = %v, want an *Error", err)
			}
			if e.Reason != tc.reason || e.Field != tc.field || !strings.Contains(e.Detail, tc.detail) {
				t.Errorf("Extract = {Reason: %q, Field: %q, Detail: %q}, want {%q, %q, …%q…}", e.Reason, e.Field, e.Detail, tc.reason, tc.field, tc.detail)
			}
			if strings.Contains(e.Error(), "sk_live") {
				t.Errorf("error %q holds a secret", e)
			}
		})
	}
}

func TestExtractDepth(t *testing.T) {
	m := keywatch(t)
	nest := func(n int) []byte {
		// n nested containers in all, the top-level object included
		return []byte(`{"x":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `, "ts": 1795622400123, "key_id": "k"}`)
	}
	if !json.Valid(nest(maxDepth)) || json.Valid(nest(maxDepth+1)) {
		t.Fatalf("encoding/json's nesting limit is not %d", maxDepth)
	}
	if _, err := m.Extract(nest(maxDepth)); err != nil {
		t.Errorf("%d levels: %v", maxDepth, err)
	}
	_, err := m.Extract(nest(maxDepth + 1))
	if e, ok := err.(*Error); !ok || e.Reason != ReasonInvalidJSON {
		t.Errorf("%d levels: %v, want invalid_json", maxDepth+1, err)
	}
}

func TestExtractFormats(t *testing.T) {
	for _, tc := range []struct {
		name  string
		field Field
		msg   string // the value of "v"
		want  Record
		err   string // Reason, when it fails
	}{
		{"rfc3339", Field{Path: "v", Format: "rfc3339"}, `"2026-11-25T16:00:00.123Z"`, Record{TS: ts0}, ""},
		{"rfc3339 rejects numbers", Field{Path: "v", Format: "rfc3339"}, `1795622400123`, Record{}, ReasonWrongType},
		{"epoch_ms number", Field{Path: "v", Format: "epoch_ms"}, `1795622400123`, Record{TS: ts0}, ""},
		{"epoch_ms string", Field{Path: "v", Format: "epoch_ms"}, `"1795622400123"`, Record{TS: ts0}, ""},
		{"epoch_ms negative", Field{Path: "v", Format: "epoch_ms"}, `-1500.5`, Record{TS: time.Unix(-1, -500_500_000).UTC()}, ""},
		{"epoch_ms not a number", Field{Path: "v", Format: "epoch_ms"}, `"soon"`, Record{}, ReasonInvalidValue},
		{"epoch_ms too large", Field{Path: "v", Format: "epoch_ms"}, `"12345678901234567890"`, Record{}, ReasonInvalidValue},
		{"epoch_ms huge exponent", Field{Path: "v", Format: "epoch_ms"}, `1e300`, Record{}, ReasonInvalidValue},
		{"epoch_s string as NGINX $msec", Field{Path: "v", Format: "epoch_s"}, `"1795622400.123"`, Record{TS: ts0}, ""},
		{"epoch_s nanoseconds", Field{Path: "v", Format: "epoch_s"}, `1795622400.123456789999`, Record{TS: ts0.Add(456789 * time.Nanosecond)}, ""},
		{"epoch_s rejects booleans", Field{Path: "v", Format: "epoch_s"}, `true`, Record{}, ReasonWrongType},
		{"clf", Field{Path: "v", Format: "clf"}, `"25/Nov/2026:17:00:00 +0100"`, Record{TS: ts0.Truncate(time.Second)}, ""},
		{"clf wrong", Field{Path: "v", Format: "clf"}, `"2026-11-25T16:00:00Z"`, Record{}, ReasonInvalidValue},
		{"layout", Field{Path: "v", Format: "layout:2006-01-02 15:04:05.000"}, `"2026-11-25 16:00:00.123"`, Record{TS: ts0}, ""},
		{"layout mismatch", Field{Path: "v", Format: "layout:2006-01-02 15:04:05.000"}, `"2026-11-25"`, Record{}, ReasonInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustCompile(t, Spec{"ts": tc.field, "key_id": {Value: "k"}})
			tc.want.KeyID = "k"
			got, err := m.Extract([]byte(`{"v": ` + tc.msg + `}`))
			if tc.err != "" {
				if e, ok := err.(*Error); !ok || e.Reason != tc.err {
					t.Fatalf("Extract = %v, want reason %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkRecord(t, got, tc.want)
		})
	}

	for _, tc := range []struct {
		name, format, value string
		want                int
		err                 string
	}{
		{"number", "number", `404`, 404, ""},
		{"number rejects a string", "", `"404"`, 0, ReasonWrongType},
		{"text string", "text", `"404"`, 404, ""},
		{"text number", "text", `404`, 404, ""},
		{"text escaped", "text", `"\u0034\u00304"`, 404, ""},
		{"text not an integer", "text", `"4o4"`, 0, ReasonInvalidValue},
		{"text empty", "text", `""`, 0, ReasonInvalidValue},
		{"text null", "text", `null`, 0, ""},
		{"text boolean", "text", `false`, 0, ReasonWrongType},
		{"too large", "number", `1e20`, 0, ReasonInvalidValue},
	} {
		t.Run("status "+tc.name, func(t *testing.T) {
			m := mustCompile(t, Spec{"ts": {Path: "ts"}, "key_id": {Value: "k"}, "status": {Path: "v", Format: tc.format}})
			got, err := m.Extract([]byte(`{"v": ` + tc.value + `}`))
			if tc.err != "" {
				if e, ok := err.(*Error); !ok || e.Reason != tc.err {
					t.Fatalf("Extract = %v, want reason %s", err, tc.err)
				}
				return
			}
			if err != nil || got.Status != tc.want {
				t.Fatalf("Extract = %d, %v; want %d", got.Status, err, tc.want)
			}
		})
	}
}

func TestExtractPathsAndOptions(t *testing.T) {
	// A path may lead to an object that other paths go into; its own field then gets an object.
	parent := mustCompile(t, Spec{"ts": {Path: "time"}, "key_id": {Path: "auth.id"}, "user_agent": {Path: "auth"}})
	_, err := parent.Extract([]byte(`{"time": 1795622400123, "auth": {"id": "k"}}`))
	if e, ok := err.(*Error); !ok || e.Reason != ReasonWrongType || e.Field != "user_agent" {
		t.Errorf("Extract = %v, want wrong_type on user_agent", err)
	}
	r, err := parent.Extract([]byte(`{"time": 1795622400123, "auth": "ua"}`))
	if e, ok := err.(*Error); !ok || e.Reason != ReasonWrongType || e.Field != "key_id" || !strings.Contains(e.Detail, "key_id (auth.id): auth is a string, want an object") {
		t.Errorf("Extract = %+v, %v; want wrong_type on key_id", r, err)
	}

	// without user_agent at auth, the same lines read
	spec := Spec{
		"ts":         {Path: "time"},
		"key_id":     {Path: "auth.credential.id", Absent: []string{"-", "unknown"}},
		"api_key":    {Path: `headers.x\.api\.key`},
		"client_id":  {Path: "auth.consumer"},
		"outcome":    {Path: "auth.result", Values: map[string]string{"success": "ok", "denied": "forbidden"}},
		"ip":         {Path: "peer", StripPort: true},
		"gateway":    {Value: "edge-eu-1"},
		"method":     {Path: "req.method"},
		"route":      {Path: `a\\b`},
		"request_id": {Path: "auth.consumer"},
		"status":     {Value: "200"},
	}
	m := mustCompile(t, spec)
	for _, tc := range []struct {
		name string
		msg  string
		want Record
	}{
		{
			name: "nested",
			msg: `{"time": 1795622400123, "auth": null, "headers": {"x.api.key": "sk_1", "x": {"api": {"key": "no"}}},
				"auth": {"credential": {"id": "kid_1"}, "consumer": "acme", "result": "denied"},
				"peer": "203.0.113.7:5432", "req": {"method": "PURGE"}, "a\\b": "/r"}`,
			want: Record{TS: ts0, KeyID: "kid_1", APIKey: "sk_1", ClientID: "acme", RequestID: "acme", Outcome: "forbidden",
				IP: "203.0.113.7", Gateway: "edge-eu-1", Method: "PURGE", Route: "/r", Status: 200},
		},
		{
			name: "absent markers, IPv6 with a port, empty outcome",
			msg:  `{"time": 1795622400123, "auth": {"credential": {"id": "-"}, "result": ""}, "peer": "[2001:db8::1]:443"}`,
			want: Record{TS: ts0, IP: "2001:db8::1", Gateway: "edge-eu-1", Status: 200},
		},
		{
			name: "bare IPv6 and IPv4 without a port",
			msg:  `{"time": 1795622400123, "peer": "2001:db8::1", "auth": {"credential": {"id": "unknown"}}}`,
			want: Record{TS: ts0, IP: "2001:db8::1", Gateway: "edge-eu-1", Status: 200},
		},
		{
			name: "a later duplicate parent replaces everything below it",
			msg:  `{"time": 1795622400123, "auth": {"credential": {"id": "kid_1"}, "consumer": "acme"}, "auth": {"result": "success"}}`,
			want: Record{TS: ts0, Outcome: "ok", Gateway: "edge-eu-1", Status: 200},
		},
		{
			name: "null parent",
			msg:  `{"time": 1795622400123, "auth": null, "headers": null, "req": null}`,
			want: Record{TS: ts0, Gateway: "edge-eu-1", Status: 200},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Extract([]byte(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			checkRecord(t, got, tc.want)
		})
	}
}

func TestExtractConcurrent(t *testing.T) {
	m := keywatch(t)
	msg := []byte(benchEvent)
	want, err := m.Extract(msg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 200 {
				got, err := m.Extract(msg)
				if err != nil || got != want {
					t.Errorf("concurrent Extract = %+v, %v", got, err)
					return
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
}

func TestExtractAllocs(t *testing.T) {
	m := keywatch(t)
	msg := []byte(benchEvent)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := m.Extract(msg); err != nil {
			t.Fatal(err)
		}
	})
	// one string for api_key, one for the other string fields
	if allocs > 2 {
		t.Errorf("Extract allocates %v times, want at most 2", allocs)
	}
}

func TestExtractAbsentMarkers(t *testing.T) {
	dash := []string{"-", ""}
	m := mustCompile(t, Spec{
		"ts":      {Path: "t", Format: "clf", Absent: dash},
		"key_id":  {Path: "k", Absent: dash},
		"status":  {Path: "s", Absent: dash},
		"outcome": {Path: "o", Absent: dash, Values: map[string]string{"allow": "ok"}},
	})
	for _, msg := range []string{
		`{"t": "-", "k": "-", "s": "-", "o": "-"}`,
		`{"t": "", "k": "", "s": "", "o": ""}`,
		`{"t": "\u002d", "k": "\u002d", "s": "\u002d", "o": "\u002d"}`,
		`{"t": null}`,
	} {
		got, err := m.Extract([]byte(msg))
		if err != nil || got != (Record{}) {
			t.Errorf("Extract(%s) = %+v, %v; want an empty record", msg, got, err)
		}
	}
	if _, err := m.Extract([]byte(`{"s": "--"}`)); err == nil {
		t.Error(`status "--" read, want an error`)
	}
}

// TestSecretPathsAndRawKey: a mapping says where the raw key is, and finds it in a message as far
// as the message can be read, so that it can be taken out of what is kept of a bad message.
func TestSecretPathsAndRawKey(t *testing.T) {
	custom := mustCompile(t, Spec{"ts": {Path: "ts"}, "api_key": {Path: `auth.cred\.v1`}, "status": {Path: "status"}})
	if got := custom.SecretPaths(); len(got) != 1 || !slices.Equal(got[0], []string{"auth", "cred.v1"}) {
		t.Errorf("SecretPaths = %q, want [[auth cred.v1]]", got)
	}
	aws, _ := Builtin("aws-apigateway")
	if got := mustCompile(t, aws).SecretPaths(); got != nil {
		t.Errorf("aws-apigateway's SecretPaths = %q, want none (it reads no raw key)", got)
	}
	constant := mustCompile(t, Spec{"ts": {Path: "ts"}, "api_key": {Value: "k"}})
	if got := constant.SecretPaths(); got != nil {
		t.Errorf("a constant api_key's SecretPaths = %q, want none", got)
	}
	for _, tc := range []struct{ name, msg, want string }{
		{"valid", `{"ts":1,"auth":{"cred.v1":"Zq01W7xKp3VH"},"status":200}`, "Zq01W7xKp3VH"},
		{"escaped", `{"auth":{"cred\u002ev1":"Zq\u00301W7xKp3VH"}}`, "Zq01W7xKp3VH"},
		{"another field of the wrong type", `{"ts":{},"auth":{"cred.v1":"Zq01W7xKp3VH"},"status":"x"}`, "Zq01W7xKp3VH"},
		{"invalid JSON after the key", `{"auth":{"cred.v1":"Zq01W7xKp3VH"},"status":200 oops`, "Zq01W7xKp3VH"},
		{"cut off inside the key", `{"auth":{"cred.v1":"Zq01W7`, ""},
		{"not a string", `{"auth":{"cred.v1":["Zq01W7xKp3VH"]}}`, ""},
		{"not an object", `["Zq01W7xKp3VH"]`, ""},
		{"absent", `{"ts":1}`, ""},
	} {
		if got := custom.RawKey([]byte(tc.msg)); got != tc.want {
			t.Errorf("%s: RawKey = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestExtractSharedSharesRepeatedValues: records read through one Texts are those Extract reads,
// and hold one copy of each repeated value; values that do not repeat are their own.
func TestExtractSharedSharesRepeatedValues(t *testing.T) {
	spec, _ := Builtin("keywatch")
	m := mustCompile(t, spec)
	texts := NewTexts()
	msg := func(i int) []byte {
		return fmt.Appendf(nil, `{"ts":"2026-11-25T16:00:00Z","key_id":"kid_1","client_id":"acme","status":200,"user_agent":"sdk\u002f2.0","route":"/v1/prices","gateway":"edge-1","method":"BREW","request_id":"r-%d","ip":"198.51.100.7"}`, i)
	}
	var records []Record
	for i := range 3 {
		want, err := m.Extract(msg(i))
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.ExtractShared(msg(i), texts)
		if err != nil || got != want {
			t.Fatalf("ExtractShared = %+v, %v; want %+v", got, err, want)
		}
		records = append(records, got)
	}
	a, b := records[1], records[2]
	for _, f := range [][2]string{{a.KeyID, b.KeyID}, {a.ClientID, b.ClientID}, {a.UserAgent, b.UserAgent}, {a.Route, b.Route}, {a.Gateway, b.Gateway}, {a.Method, b.Method}} {
		if unsafe.StringData(f[0]) != unsafe.StringData(f[1]) {
			t.Errorf("%q is held twice, want once", f[0])
		}
	}
	if unsafe.StringData(a.IP) == unsafe.StringData(b.IP) {
		t.Errorf("ip %q is shared, want each record's own", a.IP)
	}
}
