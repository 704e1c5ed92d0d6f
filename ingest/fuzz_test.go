package ingest

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecodeEvent feeds arbitrary messages to the decoder and the dead-letter redaction: neither
// may panic, a decoded event must satisfy the contract (its ids valid, its free text bounded and
// printable), and a dead letter's excerpt must be short valid UTF-8 and, with its error, hold
// neither the raw key nor an unescaped control or format character.
func FuzzDecodeEvent(f *testing.F) {
	for _, seed := range []string{
		`{"ts":"2026-11-25T16:00:00.123Z","key_id":"kid_live_2f9a","client_id":"acme","outcome":"ok","status":200,"ip":"203.0.113.7"}`,
		`{"ts":1795622400123,"api_key":"sk_live_abc","status":401,"ip":"2001:db8::1"}`,
		`{"ts":"2026-11-25T16:00:00Z","key_id":"k","status":"200"}`,
		`{"ts": "2026`,
		"{\"ts\":1,\"key_id\":\"\xff\"}",
		`[1,2,3]`,
		`{"key\u005fid":"k","ts":1795622400123,"outcome":"ok"}`,
		`{"ts":1795622400123,"api\u005fkey":"Zq01W7xKp3VHm01T9cRb2Y","status":"x","ip":"Zq01W7xKp3VHm01T9cRb2Y"}`,
		`{"ts":1795622400123,"key_id":"kid\u202egnp.exe","client_id":"a\u001b[31mb","status":200}`,
		`[{"api_key":"Zq01W7xKp3VHm01T9cRb2Y"},{"api_key":["a","Zq02W7xKp3VHm02T9cRb2Y"]}]`,
		`GET /v1/prices?api_key=Zq01W7xKp3VHm01T9cRb2Y HTTP/1.1`,
	} {
		f.Add([]byte(seed))
	}
	d, _ := newTestDecoder(f, Limits{MaxAge: 365 * 24 * time.Hour, MaxSkew: time.Hour})
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, msg []byte) {
		ev, err := d.Event(msg, now)
		if err == nil {
			if ev.KeyID == "" || ev.TS.IsZero() || !outcomes[ev.Outcome] {
				t.Fatalf("decoded an event that breaks the contract: %+v", ev)
			}
			if ev.KeyFingerprint != "" && !strings.HasPrefix(ev.KeyFingerprint, FingerprintPrefix) {
				t.Fatalf("fingerprint %q", ev.KeyFingerprint)
			}
		} else if _, ok := err.(*DecodeError); !ok {
			t.Fatalf("error of type %T: %v", err, err)
		}
		if err == nil {
			for field, v := range map[string]string{"key_id": ev.KeyID, "client_id": ev.ClientID} {
				if err := ValidateID(field, v); err != nil {
					t.Fatalf("decoded an event with a bad id: %v", err)
				}
			}
			for _, v := range []string{ev.UserAgent, ev.Method, ev.Route, ev.RequestID, ev.Gateway} {
				if len(v) > maxUserAgentLen || !utf8.ValidString(v) || strings.IndexFunc(v, func(r rune) bool { return unsafeRune(r) != "" }) >= 0 {
					t.Fatalf("decoded an event with free text %q", v)
				}
			}
			err = decodeErr(ReasonInvalidValue, "made up, to test the excerpt")
		}
		dl := d.DeadLetter(msg, err)
		ex := dl.Excerpt
		if !utf8.ValidString(ex) || len(ex) > excerptMax+len("…") {
			t.Fatalf("excerpt of %d bytes, valid UTF-8: %v", len(ex), utf8.ValidString(ex))
		}
		for _, s := range []string{dl.Excerpt, dl.Error} {
			if i := strings.IndexFunc(s, func(r rune) bool { return unsafeRune(r) != "" }); i >= 0 {
				t.Fatalf("%q holds an unescaped control or format character at byte %d", s, i)
			}
			if key := d.mapping.RawKey(msg); len(key) >= minKnownLen && strings.Contains(s, key) {
				t.Fatalf("%q holds the raw key %q", s, key)
			}
		}
	})
}
