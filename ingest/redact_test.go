package ingest

import (
	"strings"
	"testing"
)

// TestRedactorExcerpt: what a dead letter's excerpt keeps of a message, for a mapping that reads
// the raw key from auth.credential.
func TestRedactorExcerpt(t *testing.T) {
	r := NewRedactor([][]string{{"auth", "credential"}})
	const key = "Zq01W7xKp3VHm01T9cRb2Y"
	for _, tc := range []struct{ name, msg, want string }{
		{"at the mapping's path", `{"ts":1,"auth":{"credential":"` + key + `","id":"kid_1"}}`,
			`{"ts":1,"auth":{"credential":"[redacted]","id":"kid_1"}}`},
		{"the mapping's name elsewhere, in any case", `{"CREDENTIAL":"` + key + `"}`, `{"CREDENTIAL":"[redacted]"}`},
		{"escaped member name", `{"cred\u0065ntial":"` + key + `","api\u005fkey":"` + key + `"}`,
			`{"cred\u0065ntial":"[redacted]","api\u005fkey":"[redacted]"}`},
		{"key-like names, whatever their value", `{"X-API-Key":7,"authorization":{"scheme":"Bearer","v":"` + key + `"},"access_token":["a","b"],"apiKeyId":"kid_2","key_id":"kid_3"}`,
			`{"X-API-Key":"[redacted]","authorization":"[redacted]","access_token":"[redacted]","apiKeyId":"kid_2","key_id":"kid_3"}`},
		{"every element of an array", `[{"api_key":"k1k1k1k1k1"},{"api_key":"k2k2k2k2k2"},{"x":[{"token":"k3k3k3k3k3"}]}]`,
			`[{"api_key":"[redacted]"},{"api_key":"[redacted]"},{"x":[{"token":"[redacted]"}]}]`},
		{"whitespace kept, as spaces", "{ \"api_key\" :\r\n\t\"" + key + "\" , \"ts\": 1 }", "{ \"api_key\" :   \"[redacted]\" , \"ts\": 1 }"},
		{"query string in a value", `{"route":"/v1/prices?page=2&api_key=` + key + `&x=1"}`, `{"route":"/v1/prices?page=2&api_key=[redacted]&x=1"}`},
		{"bearer in a value", `{"note":"sent Bearer ` + key + `"}`, `{"note":"sent Bearer [redacted]"}`},
		{"known format in a value", `{"note":"sk_live_abcdef123"}`, `{"note":"[redacted]"}`},
		{"cut off inside the key", `{"ts":1,"api_key":"` + key[:10], `{"ts":1,"api_key":"[redacted]"`},
		{"cut off inside the mapping's key", `{"auth":{"credential":"` + key[:10], `{"auth":{"credential":"[redacted]"`},
		{"cut off inside an escape", `{"note":"abc\u00`, `{"note":"abc\u00`},
		{"secret object that is not JSON", `{"api_key":{"a":1, "v":"shortkey" oops, "b":2}, "ts":1}`, `{"api_key":"[redacted]", "b":2}, "ts":1}`},
		{"unquoted secret", `{"api_key":` + key + `, "ts":1}`, `{"api_key":"[redacted]", "ts":1}`},
		{"invalid JSON after the key", `{"api_key":"` + key + `","status":200 oops credential=` + key + `}`,
			`{"api_key":"[redacted]","status":200 oops credential=[redacted]}`},
		{"control and bidi characters escaped", "{\"key_id\":\"kid\\u001b[31m\",\"ua\":\"a\u202eb\"}", `{"key_id":"kid\u001b[31m","ua":"a\u202eb"}`},
		{"plain text: query string", `GET /v1/prices?api_key=` + key + `&x=1 HTTP/1.1`, `GET /v1/prices?api_key=[redacted]&x=1 HTTP/1.1`},
		{"plain text: percent-encoded name", `GET /v1/prices?api%5Fkey=` + key, `GET /v1/prices?api%5Fkey=[redacted]`},
		{"plain text: header", "X-Api-Key: " + key + "\r\nAuthorization: Bearer " + key, `X-Api-Key: [redacted]\u000d\u000aAuthorization: [redacted] [redacted]`},
		{"plain text: key=", `auth failed: key=` + key + ` client=acme`, `auth failed: key=[redacted] client=acme`},
		{"plain text: the mapping's name", `{ts: 1, credential: "` + key + `"}`, `{ts: 1, credential: "[redacted]"}`},
		{"plain text: long token", `rejected ` + key + ` from 203.0.113.9 at 2026-11-25T16:00:00Z`, `rejected [redacted] from 203.0.113.9 at 2026-11-25T16:00:00Z`},
		{"plain text: controls escaped", "a\x1b[31mb\u202ec\xff", `a\u001b[31mb\u202ec` + "\uFFFD"},
		{"a JSON string", `"password=` + key + `"`, `"password=[redacted]"`},
		{"trailing text", `{"a":1} token=` + key, `{"a":1} token=[redacted]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Excerpt([]byte(tc.msg)); got != tc.want {
				t.Errorf("Excerpt(%q)\n got %s\nwant %s", tc.msg, got, tc.want)
			}
		})
	}
}

// TestRedactorExcerptCut: the excerpt is cut to excerptMax bytes after redaction, so that no part
// of a key survives a cut through it, a known one included.
func TestRedactorExcerptCut(t *testing.T) {
	r := NewRedactor(nil)
	const key = "Zq01W7xKp3VHm01T9cRb2Y"
	for pad := excerptMax - 30; pad < excerptMax+5; pad++ {
		for _, msg := range []string{
			`{"note":"` + strings.Repeat("x", pad) + `","api_key":"` + key + `"}`,
			`{"note":"` + strings.Repeat("x", pad) + ` ` + key + `"}`, // known only
			strings.Repeat("y", pad) + " " + key,                      // a long token in text
		} {
			got := r.Excerpt([]byte(msg), key)
			if len(got) > excerptMax+len("…") {
				t.Fatalf("excerpt of %d bytes", len(got))
			}
			for n := minKnownLen; n <= len(key); n++ {
				if strings.Contains(got, key[:n]) {
					t.Fatalf("pad %d: excerpt %q holds %q of the key", pad, got, key[:n])
				}
			}
		}
	}
	huge := `{"api_key":"` + strings.Repeat("k", 3*excerptInput) + `"}`
	if got := r.Excerpt([]byte(huge)); got != `{"api_key":"[redacted]"` {
		t.Errorf("a secret longer than what is read: %q", got)
	}
}

func TestRedactorText(t *testing.T) {
	r := NewRedactor(nil)
	const key = "Zq01W7xKp3VHm01T9cRb2Y"
	for _, tc := range []struct{ in, want string }{
		{`invalid_value: ip: "` + key + `" is not an IP address`, `invalid_value: ip: "[redacted]" is not an IP address`},
		{`invalid_value: route: "/v1?api_key=abc12345"`, `invalid_value: route: "/v1?api_key=[redacted]"`},
		{"invalid_value: key_id: holds a control character U+001B at byte 3: \"kid\x1b[31m\"", `invalid_value: key_id: holds a control character U+001B at byte 3: "kid\u001b[31m"`},
		{`wrong_type: status (status): got a string, want a number`, `wrong_type: status (status): got a string, want a number`},
		{`invalid_json: invalid character 'x' after object key:value pair`, `invalid_json: invalid character 'x' after object key:value pair`},
		{`invalid_value: outcome: "Bearer abcdef123" is not one of ok, invalid_key`, `invalid_value: outcome: "Bearer [redacted]" is not one of ok, invalid_key`},
		{`invalid_value: version: "sk_live_abcdef123" and "key=\"abc12345\"" and "unterminated key=abc12345`, `invalid_value: version: "[redacted]" and "key=\"[redacted]\"" and "unterminated key=[redacted]`},
	} {
		if got := r.Text(tc.in, key); got != tc.want {
			t.Errorf("Text(%q)\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestKeyLike(t *testing.T) {
	for _, name := range []string{"api_key", "apikey", "X-API-Key", "x_api_key", "Authorization", "proxy-authorization",
		"access_token", "refresh-token", "client_secret", "password", "passwd", "pwd", "credentials", "Cookie", "set-cookie",
		"session", "sessionid", "X-Amz-Signature", "private_key", "Ocp-Apim-Subscription-Key", "key", "keys", "api_keys"} {
		if !keyLike(strings.ToLower(name)) {
			t.Errorf("%s: not taken for a secret's name", name)
		}
	}
	for _, name := range []string{"key_id", "apiKeyId", "token_id", "kid", "client_id", "ts", "status", "route", "user_agent", "outcome", "keyword"} {
		if keyLike(strings.ToLower(name)) {
			t.Errorf("%s: taken for a secret's name", name)
		}
	}
}
