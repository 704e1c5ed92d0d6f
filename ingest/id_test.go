package ingest

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        string // a part of the error; "" for a valid id
	}{
		{"empty: for the caller to require", "", ""},
		{"simple", "kid_live_2f9a", ""},
		{"GCP resource name", "projects/p/locations/global/keys/k", ""},
		{"ARN", "arn:aws:apigateway:eu-west-1::/apikeys/a1b2c3", ""},
		{"punctuation", "acme-billing.eu_1:v2/x@example.com", ""},
		{"fingerprint", "fp_0123456789abcdef0123456789abcdef", ""},
		{"space", "Acme Billing", ""},
		{"other scripts", "クライアント-ü-ß", ""},
		{"emoji", "team-🚀", ""},
		{"at the limit", strings.Repeat("k", MaxIDLen), ""},
		{"over the limit", strings.Repeat("k", MaxIDLen+1), "257 bytes, longer than 256"},
		{"60 KB", strings.Repeat("k", 60<<10), "61440 bytes"},
		{"NUL", "kid\x00x", `a control character U+0000 at byte 3: "kid\x00x"`},
		{"CR", "kid\rx", `U+000D`},
		{"LF", "kid\nINFO forged log line", `U+000A`},
		{"tab", "kid\tx", `U+0009`},
		{"ANSI escape", "kid\x1b[31mred", `a control character U+001B at byte 3: "kid\x1b[31mred"`},
		{"DEL", "kid\x7f", `U+007F`},
		{"C1", "kid\u0085x", `a control character U+0085`},
		{"bidi override", "kid\u202egnp.exe", `a bidi control U+202E at byte 3: "kid\u202egnp.exe"`},
		{"bidi embedding", "a\u202ab", `a bidi control U+202A`},
		{"bidi isolate", "a\u2066b", `a bidi control U+2066`},
		{"right-to-left mark", "a\u200fb", `a bidi control U+200F`},
		{"zero-width space", "kid\u200bx", `an invisible format character U+200B`},
		{"zero-width joiner", "a\u200db", `an invisible format character U+200D`},
		{"byte order mark", "\ufeffkid", `an invisible format character U+FEFF at byte 0`},
		{"line separator", "a\u2028b", `a line or paragraph separator U+2028`},
		{"invalid UTF-8", "kid\xff", `not valid UTF-8 (byte 3): "kid\xff"`},
		{"long bad value cut in the error", "\x1b" + strings.Repeat("k", 100), `"\x1b` + strings.Repeat("k", 39) + `"…`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateID("client_id", tc.value)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateID(%q) = %v, want nil", tc.value, err)
				}
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != ReasonInvalidValue {
				t.Fatalf("ValidateID(%q) = %v, want a DecodeError with reason invalid_value", tc.value, err)
			}
			if !strings.HasPrefix(de.Detail, "client_id: ") || !strings.Contains(de.Detail, tc.want) {
				t.Errorf("ValidateID(%q) = %q, want client_id: …%s…", tc.value, de.Detail, tc.want)
			}
			if i := strings.IndexFunc(err.Error(), func(r rune) bool { return unsafeRune(r) != "" }); i >= 0 || !utf8.ValidString(err.Error()) {
				t.Errorf("error %q holds a raw control, format or invalid character", err)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error of %d bytes", len(err.Error()))
			}
		})
	}
}

func TestCleanText(t *testing.T) {
	long := strings.Repeat("é", 300) // 600 bytes
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"acme-sdk/2.1", 512, "acme-sdk/2.1"},
		{"Mozilla/5.0 (X11; Linux x86_64) Ünïcode", 512, "Mozilla/5.0 (X11; Linux x86_64) Ünïcode"},
		{"sdk\x1b[31m/1\u202e\x00", 512, "sdk\uFFFD[31m/1\uFFFD\uFFFD"},
		{"bad\xffutf8", 512, "bad\uFFFDutf8"},
		{strings.Repeat("x", 600), 512, strings.Repeat("x", 509) + "…"},
		{long, 512, strings.Repeat("é", 254) + "…"},
		{"/v1/" + strings.Repeat("p", 300), 256, "/v1/" + strings.Repeat("p", 249) + "…"},
	} {
		got := cleanText(tc.in, tc.max)
		if got != tc.want {
			t.Errorf("cleanText(%q, %d)\n got %q\nwant %q", tc.in, tc.max, got, tc.want)
		}
		if len(got) > tc.max || !utf8.ValidString(got) {
			t.Errorf("cleanText(%q, %d) = %d bytes, valid UTF-8 %v", tc.in, tc.max, len(got), utf8.ValidString(got))
		}
	}
}

// TestPrintableASCII holds the eight-bytes-at-a-time check to the plain one, for every byte at
// every position of a word.
func TestPrintableASCII(t *testing.T) {
	plain := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] >= 0x7f {
				return false
			}
		}
		return true
	}
	for c := range 256 {
		for pos := range 17 {
			b := []byte(strings.Repeat("a", 17))
			b[pos] = byte(c)
			for _, s := range []string{string(b), string(b[:pos+1]), string(b[pos:])} {
				if got, want := printableASCII(s), plain(s); got != want {
					t.Fatalf("printableASCII(%q) = %v, want %v", s, got, want)
				}
			}
		}
	}
}
