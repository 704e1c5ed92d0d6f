package ingest

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecodeEvent feeds arbitrary messages to the decoder and the dead-letter redaction: neither
// may panic, a decoded event must satisfy the contract, and an excerpt must be short valid UTF-8.
func FuzzDecodeEvent(f *testing.F) {
	for _, seed := range []string{
		`{"ts":"2026-11-25T16:00:00.123Z","key_id":"kid_live_2f9a","client_id":"acme","outcome":"ok","status":200,"ip":"203.0.113.7"}`,
		`{"ts":1795622400123,"api_key":"sk_live_abc","status":401,"ip":"2001:db8::1"}`,
		`{"ts":"2026-11-25T16:00:00Z","key_id":"k","status":"200"}`,
		`{"ts": "2026`,
		"{\"ts\":1,\"key_id\":\"\xff\"}",
		`[1,2,3]`,
		`{"key\u005fid":"k","ts":1795622400123,"outcome":"ok"}`,
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
		ex := Redact(msg)
		if !utf8.ValidString(ex) || len(ex) > excerptMax+len("…") {
			t.Fatalf("excerpt of %d bytes, valid UTF-8: %v", len(ex), utf8.ValidString(ex))
		}
	})
}
