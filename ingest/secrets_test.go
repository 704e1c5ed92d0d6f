package ingest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/ingest/mapping"
)

// secretCase is one message of TestNoRawKeyInAnyStoredCell: where it goes, the raw keys it
// carries and what becomes of it ("stored" or a dead-letter reason).
type secretCase struct {
	name, topic, msg, want string
	secrets                []string
}

// rawKeys hands out raw keys that no pattern recognises by their shape (no sk_live_ prefix),
// each made of a unique 12-byte head and tail, so that a stored half of one is found too.
type rawKeys struct{ n int }

func (r *rawKeys) next() string {
	r.n++
	return fmt.Sprintf("Zq%02dW7xKp3V", r.n) + fmt.Sprintf("Hm%02dT9cRb2Y", r.n)
}

// secretCases are the messages of TestNoRawKeyInAnyStoredCell for a mapping that reads the raw
// key at the top-level member name (escaped: the same name with a JSON escape in it).
func secretCases(name, escaped string, maxBytes int) []secretCase {
	var keys rawKeys
	now := time.Now().UTC().Format(time.RFC3339Nano)
	old := time.Now().Add(-40 * 24 * time.Hour).UTC().Format(time.RFC3339Nano)
	q := func(s string) string { return `"` + s + `"` }
	var cases []secretCase
	add := func(c secretCase) {
		if c.topic == "" {
			c.topic = authTopic
		}
		cases = append(cases, c)
	}
	var s, s1, s2, s3 string
	fresh := func() string { s = keys.next(); return s }
	three := func() { s1, s2, s3 = keys.next(), keys.next(), keys.next() }

	fresh()
	add(secretCase{name: "stored event, key at the mapping's path", want: "stored", secrets: []string{s},
		msg: `{"ts":` + q(now) + `,` + q(name) + `:` + q(s) + `,"status":200,"request_id":"stored-1"}`})
	fresh()
	add(secretCase{name: "stored event, the same key in the route's query string", want: "stored", secrets: []string{s},
		msg: `{"ts":` + q(now) + `,` + q(name) + `:` + q(s) + `,"status":200,"route":"/v1/prices?k=` + s + `&page=2","request_id":"stored-2"}`})
	fresh()
	add(secretCase{name: "stored event, another key in the route's query string", want: "stored", secrets: []string{s},
		msg: `{"ts":` + q(now) + `,"key_id":"kid_q","status":200,"route":"/v1/prices?api_key=` + s + `","request_id":"stored-3"}`})
	fresh()
	add(secretCase{name: "older than max_event_age", want: ingest.ReasonInvalidValue, secrets: []string{s},
		msg: `{"ts":` + q(old) + `,"key_id":"kid_old",` + q(name) + `:` + q(s) + `,"status":200}`})
	fresh()
	add(secretCase{name: "older than max_event_age, the key also in a free-text member across the excerpt's cut", want: ingest.ReasonInvalidValue, secrets: []string{s},
		msg: `{"ts":` + q(old) + `,` + q(name) + `:` + q(s) + `,"status":200,"note":"` + strings.Repeat("n", 392) + `","user_agent":"sdk ` + s + `"}`})
	fresh()
	add(secretCase{name: "older than max_event_age, escaped member name", want: ingest.ReasonInvalidValue, secrets: []string{s},
		msg: `{"ts":` + q(old) + `,` + q(escaped) + `:` + q(s) + `,"status":200}`})
	fresh()
	add(secretCase{name: "older than max_event_age, escaped key-like name the mapping does not read", want: ingest.ReasonInvalidValue, secrets: []string{s},
		msg: `{"ts":` + q(old) + `,"key_id":"kid_x","X-Api\u002dKey":` + q(s) + `,"status":200}`})
	fresh()
	add(secretCase{name: "older than max_event_age, key in a query string inside a JSON string", want: ingest.ReasonInvalidValue, secrets: []string{s},
		msg: `{"ts":` + q(old) + `,"key_id":"kid_x","route":"/v1/prices?access_token=` + s + `&x=1","status":200}`})
	fresh()
	add(secretCase{name: "invalid JSON after the key", want: ingest.ReasonInvalidJSON, secrets: []string{s},
		msg: `{"ts":` + q(now) + `,` + q(name) + `:` + q(s) + `,"status":200 oops}`})
	fresh()
	add(secretCase{name: "message cut off inside the key", want: ingest.ReasonInvalidJSON, secrets: []string{s},
		msg: `{"ts":` + q(now) + `,"status":200,` + q(name) + `:"` + s})
	fresh()
	add(secretCase{name: "key unquoted", want: ingest.ReasonInvalidJSON, secrets: []string{s},
		msg: `{"ts":` + q(now) + `,"status":200,` + q(name) + `:` + s + `}`})
	fresh()
	add(secretCase{name: "wrong type elsewhere", want: ingest.ReasonWrongType, secrets: []string{s},
		msg: `{"ts":` + q(now) + `,` + q(name) + `:` + q(s) + `,"status":"200"}`})
	three()
	add(secretCase{name: "array of events", want: ingest.ReasonWrongType, secrets: []string{s1, s2, s3},
		msg: `[{"ts":` + q(now) + `,` + q(name) + `:` + q(s1) + `,"status":200},{"ts":` + q(now) + `,` + q(name) + `:` + q(s2) +
			`,"status":200},{"ts":` + q(now) + `,` + q(name) + `:` + q(s3) + `,"status":200}]`})
	three()
	add(secretCase{name: "keys in an array at the mapping's path", want: ingest.ReasonWrongType, secrets: []string{s1, s2, s3},
		msg: `{"ts":` + q(now) + `,` + q(name) + `:[` + q(s1) + `,` + q(s2) + `,` + q(s3) + `],"status":200}`})
	three()
	add(secretCase{name: "keys in nested headers", want: ingest.ReasonWrongType, secrets: []string{s1, s2, s3},
		msg: `{"ts":` + q(now) + `,"key_id":"kid_n","request":{"headers":{"Authorization":"Bearer ` + s1 + `","X-Api-Key":` + q(s2) +
			`,"more":[{"token":` + q(s3) + `}]}},"status":true}`})
	fresh()
	add(secretCase{name: "larger than max_message_bytes", want: ingest.ReasonTooLarge, secrets: []string{s},
		msg: `{"ts":` + q(now) + `,` + q(name) + `:` + q(s) + `,"pad":"` + strings.Repeat("x", maxBytes) + `"}`})
	fresh()
	add(secretCase{name: "key at the mapping's path and in a value the error quotes", want: ingest.ReasonInvalidValue, secrets: []string{s},
		msg: `{"ts":` + q(now) + `,` + q(name) + `:` + q(s) + `,"ip":` + q(s) + `,"status":200}`})
	fresh()
	add(secretCase{name: "plain text, query string", want: ingest.ReasonInvalidJSON, secrets: []string{s},
		msg: `GET /v1/prices?page=2&api_key=` + s + `&x=1 HTTP/1.1 401`})
	fresh()
	add(secretCase{name: "plain text, percent-encoded parameter name", want: ingest.ReasonInvalidJSON, secrets: []string{s},
		msg: `GET /v1/prices?api%5Fkey=` + s + ` HTTP/1.1 401`})
	fresh()
	add(secretCase{name: "plain text, bearer token", want: ingest.ReasonInvalidJSON, secrets: []string{s},
		msg: `curl -H 'Authorization: Bearer ` + s + `' https://api.example.com/v1/prices`})
	fresh()
	add(secretCase{name: "plain text, key=", want: ingest.ReasonInvalidJSON, secrets: []string{s},
		msg: `auth failed: key=` + s + ` client=acme`})
	fresh()
	add(secretCase{name: "plain text, bare key", want: ingest.ReasonInvalidJSON, secrets: []string{s},
		msg: `rejected ` + s + ` from 203.0.113.9`})
	fresh()
	add(secretCase{name: "plain text, the mapping's member name", want: ingest.ReasonInvalidJSON, secrets: []string{s},
		msg: `{ts: now, ` + name + `: "` + s + `"}`})
	fresh()
	add(secretCase{name: "lifecycle event with a key", topic: lifecycleTopic, want: ingest.ReasonWrongType, secrets: []string{s},
		msg: `{"ts":` + q(now) + `,"type":"key.created","key_id":"kid_l","api_key":` + q(s) + `,"scopes":"read"}`})
	return cases
}

// TestNoRawKeyInAnyStoredCell sends messages carrying raw keys through Kafka, the consumer and
// ClickHouse, stored ones and every kind of dead letter, under the built-in mapping and under a
// custom one that reads the key from "credential", and then reads every cell of every table of
// the database: no raw key, nor half of one, may be in any of them, nor in the logs.
func TestNoRawKeyInAnyStoredCell(t *testing.T) {
	custom := mapping.Spec{
		"ts": {Path: "ts"}, "key_id": {Path: "key_id"}, "api_key": {Path: "credential"}, "status": {Path: "status"},
		"ip": {Path: "ip"}, "route": {Path: "route"}, "request_id": {Path: "request_id"},
	}
	builtin, _ := mapping.Builtin("keywatch")
	for _, tc := range []struct {
		mapping       string
		spec          mapping.Spec
		name, escaped string
	}{
		{"keywatch", builtin, "api_key", `api\u005fkey`},
		{"custom", custom, "credential", `cred\u0065ntial`},
	} {
		t.Run(tc.mapping, func(t *testing.T) {
			var logs syncBuffer
			e := newEnv(t, &logs)
			m, err := mapping.Compile("ingest.mappings."+tc.mapping, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			e.opts.Decoder = ingest.NewDecoder(m, ingest.NewFingerprinter([]byte(testFingerprintKey)),
				ingest.Limits{MaxAge: 720 * time.Hour, MaxSkew: time.Hour}, nil)
			e.opts.MaxMessageBytes = 4 << 10
			cases := secretCases(tc.name, tc.escaped, e.opts.MaxMessageBytes)
			wantStored, wantDead := 0, map[string]int{}
			for _, c := range cases {
				if err := e.kafka.Produce(context.Background(), c.topic, []byte(c.msg)); err != nil {
					t.Fatal(err)
				}
				if c.want == "stored" {
					wantStored++
				} else {
					wantDead[c.topic+" "+c.want]++
				}
			}
			stop := e.run(t)
			waitFor(t, "every message stored or dead-lettered", time.Minute, func() bool {
				return e.count(t, "SELECT count() FROM auth_events")+e.count(t, "SELECT count() FROM dead_letters") == uint64(len(cases)) &&
					e.lag(t, authTopic) == 0 && e.lag(t, lifecycleTopic) == 0
			})
			_ = stop()

			if got := e.count(t, "SELECT count() FROM auth_events"); got != uint64(wantStored) {
				t.Errorf("%d events stored, want %d", got, wantStored)
			}
			for what, want := range wantDead {
				topic, reason, _ := strings.Cut(what, " ")
				if got := e.count(t, "SELECT count() FROM dead_letters WHERE topic = ? AND reason = ?", topic, reason); got != uint64(want) {
					t.Errorf("%d dead letters of %s with reason %s, want %d", got, topic, reason, want)
				}
			}
			tables := dumpEveryCell(t, e.db)
			for _, table := range []string{"auth_events", "dead_letters", "key_minutes", "key_lifecycle_events"} {
				if _, ok := tables[table]; !ok {
					t.Fatalf("table %s not read: the dump misses tables", table)
				}
			}
			if !strings.Contains(tables["dead_letters"], "[redacted]") || !strings.Contains(tables["auth_events"], ingest.FingerprintPrefix) {
				t.Fatal("the dump misses the redacted excerpts or the fingerprints: it is not reading the cells")
			}
			for _, c := range cases {
				for _, s := range c.secrets {
					for _, part := range []string{s, s[:12], s[12:]} {
						for table, text := range tables {
							if i := strings.Index(text, part); i >= 0 {
								t.Errorf("%s: %q of raw key %s is stored in %s: %q", c.name, part, s, table, around(text, i))
							}
						}
						if i := strings.Index(logs.String(), part); i >= 0 {
							t.Errorf("%s: %q of raw key %s is in the logs: %q", c.name, part, s, around(logs.String(), i))
						}
					}
				}
			}
			if t.Failed() {
				t.Logf("dead_letters:\n%s", tables["dead_letters"])
			}
		})
	}
}

// around is the line of text around index i.
func around(text string, i int) string {
	start := strings.LastIndexByte(text[:i], '\n') + 1
	end := strings.IndexByte(text[i:], '\n')
	if end < 0 {
		end = len(text) - i
	}
	line := text[start : i+end]
	if len(line) > 300 {
		from := max(0, i-start-150)
		line = line[from:min(len(line), from+300)]
	}
	return line
}

// dumpEveryCell reads every cell of every table and view of database db (system.tables), each
// as its text (TSVRaw: a String's bytes as they are, an aggregate state as its serialized bytes),
// and returns them by table name, one row per line.
func dumpEveryCell(t *testing.T, db string) map[string]string {
	t.Helper()
	query := func(q string) string {
		resp, err := http.Get("http://" + ch.HTTPAddr(t) + "/?database=" + url.QueryEscape(db) + "&query=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", q, b)
		}
		return string(b)
	}
	out := map[string]string{}
	names := strings.Fields(query("SELECT name FROM system.tables WHERE database = currentDatabase() FORMAT TSVRaw"))
	slices.Sort(names)
	for _, table := range names {
		out[table] = query(fmt.Sprintf("SELECT * FROM `%s` FORMAT TSVRaw", table))
	}
	return out
}
