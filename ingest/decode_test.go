package ingest

import (
	"errors"
	"fmt"

	"github.com/keywatch/keywatch/ingest/mapping"
	"strings"
	"testing"
	"time"
)

func newTestDecoder(t testing.TB, limits Limits) (*Decoder, *Fingerprinter) {
	spec, _ := mapping.Builtin("keywatch")
	m, err := mapping.Compile("ingest.mapping", spec)
	if err != nil {
		t.Fatal(err)
	}
	fp := NewFingerprinter([]byte("0123456789abcdef"))
	return NewDecoder(m, fp, limits, nil), fp
}

func TestDecodeEvent(t *testing.T) {
	d, fp := newTestDecoder(t, Limits{})
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	ts := time.Date(2026, 11, 25, 16, 0, 0, 123e6, time.UTC)
	cases := []struct {
		name        string
		msg         string
		wantReason  string
		wantKey     string
		wantOutcome Outcome
		wantTS      time.Time
	}{
		{name: "contract example", msg: `{"ts":"2026-11-25T16:00:00.123Z","key_id":"kid_live_2f9a","client_id":"acme-billing","outcome":"ok","status":200,"ip":"203.0.113.7"}`, wantKey: "kid_live_2f9a", wantOutcome: OutcomeOK, wantTS: ts},
		{name: "epoch milliseconds", msg: `{"ts":1795622400123,"key_id":"k","outcome":"ok"}`, wantKey: "k", wantOutcome: OutcomeOK, wantTS: time.UnixMilli(1795622400123).UTC()},
		{name: "outcome from 401", msg: `{"ts":1795622400123,"key_id":"k","status":401}`, wantKey: "k", wantOutcome: OutcomeInvalidKey, wantTS: time.UnixMilli(1795622400123).UTC()},
		{name: "outcome from 403", msg: `{"ts":1795622400123,"key_id":"k","status":403}`, wantKey: "k", wantOutcome: OutcomeForbidden, wantTS: time.UnixMilli(1795622400123).UTC()},
		{name: "outcome from 429", msg: `{"ts":1795622400123,"key_id":"k","status":429}`, wantKey: "k", wantOutcome: OutcomeRateLimited, wantTS: time.UnixMilli(1795622400123).UTC()},
		{name: "outcome from 503", msg: `{"ts":1795622400123,"key_id":"k","status":503}`, wantKey: "k", wantOutcome: OutcomeError, wantTS: time.UnixMilli(1795622400123).UTC()},
		{name: "outcome from 404", msg: `{"ts":1795622400123,"key_id":"k","status":404}`, wantKey: "k", wantOutcome: OutcomeOK, wantTS: time.UnixMilli(1795622400123).UTC()},
		{name: "api_key becomes key id", msg: `{"ts":1795622400123,"api_key":"sk_live_abc","outcome":"ok"}`, wantKey: fp.Fingerprint("sk_live_abc"), wantOutcome: OutcomeOK, wantTS: time.UnixMilli(1795622400123).UTC()},
		{name: "not json", msg: `{"ts": nope`, wantReason: ReasonInvalidJSON},
		{name: "invalid utf-8", msg: "{\"ts\":1,\"key_id\":\"\xff\"}", wantReason: ReasonInvalidUTF8},
		{name: "status as string", msg: `{"ts":1795622400123,"key_id":"k","status":"200"}`, wantReason: ReasonWrongType},
		{name: "key id as number", msg: `{"ts":1795622400123,"key_id":42,"outcome":"ok"}`, wantReason: ReasonWrongType},
		{name: "ts as object", msg: `{"ts":{},"key_id":"k","outcome":"ok"}`, wantReason: ReasonWrongType},
		{name: "missing ts", msg: `{"key_id":"k","outcome":"ok"}`, wantReason: ReasonMissingField},
		{name: "missing key id", msg: `{"ts":1795622400123,"outcome":"ok"}`, wantReason: ReasonMissingField},
		{name: "missing outcome and status", msg: `{"ts":1795622400123,"key_id":"k"}`, wantReason: ReasonMissingField},
		{name: "unknown outcome", msg: `{"ts":1795622400123,"key_id":"k","outcome":"maybe"}`, wantReason: ReasonInvalidValue},
		{name: "bad ip", msg: `{"ts":1795622400123,"key_id":"k","outcome":"ok","ip":"999.1.1.1"}`, wantReason: ReasonInvalidValue},
		{name: "bad ts text", msg: `{"ts":"yesterday","key_id":"k","outcome":"ok"}`, wantReason: ReasonInvalidValue},
		{name: "ts in 1970", msg: `{"ts":0,"key_id":"k","outcome":"ok"}`, wantReason: ReasonInvalidValue},
		{name: "status out of range", msg: `{"ts":1795622400123,"key_id":"k","status":42}`, wantReason: ReasonInvalidValue},
		{name: "top-level array", msg: `[{"ts":1795622400123,"key_id":"k","status":200}]`, wantReason: ReasonWrongType},
		{name: "trailing garbage", msg: `{"ts":1795622400123,"key_id":"k","status":200} x`, wantReason: ReasonInvalidJSON},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := d.Event([]byte(tc.msg), now)
			if tc.wantReason != "" {
				var de *DecodeError
				if !errors.As(err, &de) || de.Reason != tc.wantReason {
					t.Fatalf("err = %v, want reason %s", err, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.KeyID != tc.wantKey || ev.Outcome != tc.wantOutcome || !ev.TS.Equal(tc.wantTS) {
				t.Fatalf("got key %q outcome %q ts %s; want %q %q %s", ev.KeyID, ev.Outcome, ev.TS, tc.wantKey, tc.wantOutcome, tc.wantTS)
			}
		})
	}
}

func TestDecodeLifecycle(t *testing.T) {
	cases := []struct {
		name, msg, wantReason string
	}{
		{name: "rotation started", msg: `{"ts":"2026-11-25T16:00:00Z","type":"key.rotation_started","key_id":"kid_old","client_id":"acme","new_key_id":"kid_new","grace_until":"2026-11-28T16:00:00Z"}`},
		{name: "revoked", msg: `{"ts":1795622400123,"type":"key.revoked","key_id":"kid_old","reason":"leak"}`},
		{name: "rotation without successor", msg: `{"ts":1795622400123,"type":"key.rotation_started","key_id":"kid_old"}`, wantReason: ReasonMissingField},
		{name: "unknown type", msg: `{"ts":1795622400123,"type":"key.paused","key_id":"k"}`, wantReason: ReasonInvalidValue},
		{name: "missing type", msg: `{"ts":1795622400123,"key_id":"k"}`, wantReason: ReasonMissingField},
		{name: "bad grace", msg: `{"ts":1795622400123,"type":"key.rotation_started","key_id":"a","new_key_id":"b","grace_until":"soon"}`, wantReason: ReasonInvalidValue},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeLifecycle([]byte(tc.msg))
			var de *DecodeError
			switch {
			case tc.wantReason == "" && err != nil:
				t.Fatal(err)
			case tc.wantReason != "" && (!errors.As(err, &de) || de.Reason != tc.wantReason):
				t.Fatalf("err = %v, want reason %s", err, tc.wantReason)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	cases := []struct{ name, msg, secret string }{
		{"valid json", `{"ts":1,"api_key":"sk_live_AAAA1111","outcome":"ok"}`, "sk_live_AAAA1111"},
		{"cut off inside the value", `{"ts":1,"api_key":"hunter2hunter2`, "hunter2hunter2"},
		{"number value", `{"api_key": 98765432123, "ts":1}`, "98765432123"},
		{"other secret name", `{"Authorization":"Bearer abc.def.ghi"}`, "abc.def.ghi"},
		{"secret shape anywhere", `garbage sk_test_ZZZZ9999 more`, "sk_test_ZZZZ9999"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := NewRedactor(nil).Excerpt([]byte(tc.msg))
			if strings.Contains(got, tc.secret) || !strings.Contains(got, "[redacted]") {
				t.Fatalf("Redact(%q) = %q", tc.msg, got)
			}
		})
	}
	if got := NewRedactor(nil).Excerpt([]byte(strings.Repeat("x", 5000))); len(got) > excerptMax+4 {
		t.Fatalf("excerpt of %d bytes, want at most %d", len(got), excerptMax)
	}
}

func TestDecodeEventTimestampLimits(t *testing.T) {
	d, _ := newTestDecoder(t, Limits{MaxAge: 24 * time.Hour, MaxSkew: time.Hour})
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	cases := []struct {
		ts         time.Time
		wantReason string
	}{
		{now.Add(-23 * time.Hour), ""},
		{now.Add(-25 * time.Hour), ReasonInvalidValue},
		{now.Add(59 * time.Minute), ""},
		{now.Add(61 * time.Minute), ReasonInvalidValue},
	}
	for _, tc := range cases {
		msg := fmt.Sprintf(`{"ts":%q,"key_id":"k","status":200}`, tc.ts.Format(time.RFC3339))
		_, err := d.Event([]byte(msg), now)
		var de *DecodeError
		switch {
		case tc.wantReason == "" && err != nil:
			t.Errorf("%s: %v", tc.ts, err)
		case tc.wantReason != "" && (!errors.As(err, &de) || de.Reason != tc.wantReason):
			t.Errorf("%s: err = %v, want reason %s", tc.ts, err, tc.wantReason)
		}
	}
}

// TestDecodeEventIDsAndFreeText: key and client ids must pass ValidateID (the error names the
// field and escapes the value); free text is cut to its bound and made printable, and the raw key
// is taken out of it wherever the gateway also logged it.
func TestDecodeEventIDsAndFreeText(t *testing.T) {
	d, fp := newTestDecoder(t, Limits{})
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	const key = "Zq01W7xKp3VHm01T9cRb2Y"
	for _, tc := range []struct{ name, fields, want string }{
		{"key id too long", `"key_id":"` + strings.Repeat("k", 60<<10) + `"`, "key_id: 61440 bytes, longer than 256"},
		{"key id with NUL", `"key_id":"kid\u0000"`, `key_id: holds a control character U+0000 at byte 3: "kid\x00"`},
		{"key id with CR LF", `"key_id":"kid\r\nforged"`, `key_id: holds a control character U+000D`},
		{"key id with an ANSI escape", `"key_id":"kid\u001b[2J"`, `key_id: holds a control character U+001B at byte 3: "kid\x1b[2J"`},
		{"key id with a bidi override", "\"key_id\":\"kid\u202egnp\"", `key_id: holds a bidi control U+202E at byte 3: "kid\u202egnp"`},
		{"client id with a bidi override", `"key_id":"k","client_id":"acme\u202e"`, `client_id: holds a bidi control U+202E`},
		{"client id too long", `"key_id":"k","client_id":"` + strings.Repeat("c", 257) + `"`, `client_id: 257 bytes`},
		{"key id holding the raw key", `"key_id":"` + key + `","api_key":"` + key + `"`, "key_id or client_id holds the raw api_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Event([]byte(`{"ts":1795622400123,"status":200,`+tc.fields+`}`), now)
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != ReasonInvalidValue || !strings.Contains(de.Detail, tc.want) {
				t.Fatalf("err = %v, want invalid_value: …%s…", err, tc.want)
			}
			if strings.Contains(err.Error(), key) || strings.IndexFunc(err.Error(), func(r rune) bool { return unsafeRune(r) != "" }) >= 0 {
				t.Fatalf("error %q holds the key or a raw control character", err)
			}
		})
	}

	msg := fmt.Sprintf(`{"ts":1795622400123,"status":200,"key_id":"projects/p/locations/global/keys/k","client_id":"acme@billing:eu.1",
		"api_key":%q,"user_agent":"sdk\u001b[31m/%s","route":"/v1/prices?api_key=other-key-1234&k=%s","request_id":"r\u202e1",
		"gateway":%q,"method":"GET\u0000"}`, key, strings.Repeat("u", 600), key, strings.Repeat("g", 300))
	ev, err := d.Event([]byte(msg), now)
	if err != nil {
		t.Fatal(err)
	}
	if ev.KeyID != "projects/p/locations/global/keys/k" || ev.ClientID != "acme@billing:eu.1" || ev.KeyFingerprint != fp.Fingerprint(key) {
		t.Errorf("ids: %q %q %q", ev.KeyID, ev.ClientID, ev.KeyFingerprint)
	}
	if want := "sdk\uFFFD[31m/" + strings.Repeat("u", 512-len("sdk\uFFFD[31m/")-len("…")) + "…"; ev.UserAgent != want {
		t.Errorf("user agent %q (%d bytes), want %q", ev.UserAgent, len(ev.UserAgent), want)
	}
	if want := "/v1/prices?api_key=[redacted]&k=[redacted]"; ev.Route != want {
		t.Errorf("route %q, want %q", ev.Route, want)
	}
	if ev.RequestID != "r\uFFFD1" || ev.Method != "GET\uFFFD" || len(ev.Gateway) != 256 || !strings.HasSuffix(ev.Gateway, "…") {
		t.Errorf("request id %q, method %q, gateway of %d bytes", ev.RequestID, ev.Method, len(ev.Gateway))
	}
}

// TestDecodeLifecycleIDs: the ids of a lifecycle event must pass ValidateID, from Kafka and from
// POST /v1/lifecycle alike; the error names the field.
func TestDecodeLifecycleIDs(t *testing.T) {
	const base = `"ts":"2026-11-25T16:00:00Z","type":"key.rotation_started","grace_until":"2026-11-28T16:00:00Z"`
	for _, tc := range []struct{ name, fields, want string }{
		{"valid", `,"key_id":"projects/p/locations/global/keys/old","new_key_id":"projects/p/locations/global/keys/new","client_id":"acme"`, ""},
		{"key id too long", `,"key_id":"` + strings.Repeat("k", 257) + `","new_key_id":"n"`, "key_id: 257 bytes"},
		{"key id with LF", `,"key_id":"old\nx","new_key_id":"n"`, "key_id: holds a control character U+000A"},
		{"new key id with ESC", `,"key_id":"old","new_key_id":"new\u001b[0m"`, "new_key_id: holds a control character U+001B"},
		{"new key id with a bidi override", `,"key_id":"old","new_key_id":"new\u202e"`, "new_key_id: holds a bidi control U+202E"},
		{"client id with a zero-width space", `,"key_id":"old","new_key_id":"n","client_id":"ac\u200bme"`, "client_id: holds an invisible format character U+200B"},
		{"version with a bidi override", `,"key_id":"old","new_key_id":"n","version":"v\u202e3"`, "version: holds a bidi control"},
		{"scope with a C1 control", `,"key_id":"old","new_key_id":"n","scopes":["read\u0085"]`, "scopes[0]: holds a control character U+0085"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := DecodeLifecycle([]byte(`{` + base + tc.fields + `}`))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != ReasonInvalidValue || !strings.Contains(de.Detail, tc.want) {
				t.Fatalf("DecodeLifecycle = %+v, %v; want invalid_value: …%s…", ev, err, tc.want)
			}
		})
	}
	ev, err := DecodeLifecycle([]byte(`{"ts":1795622400123,"type":"key.revoked","key_id":"k","reason":"leaked\u001b[2J` + strings.Repeat("r", 600) + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Reason) != 512 || !strings.HasPrefix(ev.Reason, "leaked\uFFFD[2J") || !strings.HasSuffix(ev.Reason, "…") {
		t.Errorf("reason %q…: %d bytes, want 512, cut and printable", ev.Reason[:20], len(ev.Reason))
	}
}
