package mapping

import (
	"encoding/json"
	"os"
	"testing"
)

// benchEvent is a realistic contract event: every field, plus fields the mapping skips.
const benchEvent = `{"ts":"2026-11-25T16:00:00.123Z","key_id":"kid_live_2f9a","api_key":"sk_live_4eC39HqLyjWDarjtT1zdp7dc","client_id":"acme-billing","outcome":"ok","status":200,"ip":"203.0.113.7","user_agent":"acme-sdk/2.1 (linux; go1.26)","method":"GET","route":"/v1/prices/{id}","request_id":"req-1795622400-9f3a2c1d","gateway":"edge-eu-1","latency_ms":12.5,"tls":{"version":"TLSv1.3","cipher":"TLS_AES_128_GCM_SHA256","sni":"api.acme.example"},"bytes_sent":1834,"tags":["prod","eu"]}`

// contractEvent is the contract decoded with encoding/json, for comparison.
type contractEvent struct {
	TS        json.RawMessage `json:"ts"`
	KeyID     string          `json:"key_id"`
	APIKey    string          `json:"api_key"`
	ClientID  string          `json:"client_id"`
	Outcome   string          `json:"outcome"`
	Status    *int            `json:"status"`
	IP        string          `json:"ip"`
	UserAgent string          `json:"user_agent"`
	Method    string          `json:"method"`
	Route     string          `json:"route"`
	RequestID string          `json:"request_id"`
	Gateway   string          `json:"gateway"`
}

func BenchmarkExtract(b *testing.B) {
	run := func(name, builtin string, msg []byte) {
		b.Run(name, func(b *testing.B) {
			spec, _ := Builtin(builtin)
			m, err := Compile("bench", spec)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.Extract(msg); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Extract(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("keywatch", "keywatch", []byte(benchEvent))
	b.Run("encoding_json", func(b *testing.B) {
		msg := []byte(benchEvent)
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			var ev contractEvent
			if err := json.Unmarshal(msg, &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, s := range []struct{ name, file string }{
		{"kong", "testdata/kong/key-auth-ok.json"},
		{"envoy", "testdata/envoy/ok.json"},
	} {
		msg, err := os.ReadFile(s.file)
		if err != nil {
			b.Fatal(err)
		}
		run(s.name, s.name, msg)
	}
}
