package mapping

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCompileErrors(t *testing.T) {
	ok := Spec{"ts": {Path: "ts"}, "key_id": {Path: "key_id"}}
	with := func(name string, f Field) Spec {
		s := Spec{}
		for k, v := range ok {
			s[k] = v
		}
		s[name] = f
		return s
	}
	for _, tc := range []struct {
		name string
		spec Spec
		want []string // every problem, in order
	}{
		{"unknown ts format", with("ts", Field{Path: "t", Format: "epoch_us"}), []string{
			`ingest.mappings.mygw.ts.format: "epoch_us": want auto, rfc3339, epoch_ms, epoch_s, clf or layout:<Go layout>`,
		}},
		{"not a contract field", with("kei_id", Field{Path: "k"}), []string{
			`ingest.mappings.mygw.kei_id: not a field of the event contract (want one of ts, key_id, api_key, client_id, outcome, status, ip, user_agent, method, route, request_id, gateway)`,
		}},
		{"path and value", with("gateway", Field{Path: "gw", Value: "edge"}), []string{
			`ingest.mappings.mygw.gateway: both path and value are set`,
		}},
		{"neither path nor value", with("route", Field{}), []string{
			`ingest.mappings.mygw.route: neither path nor value is set`,
		}},
		{"strip_port on another field", with("route", Field{Path: "r", StripPort: true}), []string{
			`ingest.mappings.mygw.route.strip_port: only ip takes strip_port`,
		}},
		{"values on another field", with("status", Field{Path: "s", Values: map[string]string{"a": "ok"}}), []string{
			`ingest.mappings.mygw.status.values: only outcome takes values`,
		}},
		{"values to a non-outcome", with("outcome", Field{Path: "o", Values: map[string]string{"success": "ok", "denied": "deny", "x": "allowed"}}), []string{
			`ingest.mappings.mygw.outcome.values.denied: "deny": not a contract outcome (want ok, invalid_key, expired_key, revoked_key, forbidden, rate_limited or error)`,
			`ingest.mappings.mygw.outcome.values.x: "allowed": not a contract outcome`,
		}},
		{"empty values", with("outcome", Field{Path: "o", Values: map[string]string{}}), []string{
			`ingest.mappings.mygw.outcome.values: empty`,
		}},
		{"ts missing", Spec{"key_id": {Path: "k"}}, []string{
			`ingest.mappings.mygw.ts: missing`,
		}},
		{"no key", Spec{"ts": {Path: "t"}, "client_id": {Path: "c"}}, []string{
			`ingest.mappings.mygw.key_id: missing: the spec needs key_id or api_key`,
		}},
		{"empty spec", Spec{}, []string{
			`ingest.mappings.mygw.key_id: missing`,
			`ingest.mappings.mygw.ts: missing`,
		}},
		{"format on a text field", with("route", Field{Path: "r", Format: "text"}), []string{
			`ingest.mappings.mygw.route.format: only ts and status take a format`,
		}},
		{"status format", with("status", Field{Path: "s", Format: "string"}), []string{
			`ingest.mappings.mygw.status.format: "string": want number or text`,
		}},
		{"status constant", with("status", Field{Value: "OK"}), []string{
			`ingest.mappings.mygw.status.value: "OK": want an integer HTTP status`,
		}},
		{"outcome constant", with("outcome", Field{Value: "success"}), []string{
			`ingest.mappings.mygw.outcome.value: "success": not a contract outcome`,
		}},
		{"ts constant", with("ts", Field{Value: "2026-11-25T16:00:00Z"}), []string{
			`ingest.mappings.mygw.ts.value: ts cannot be a constant`,
		}},
		{"options on a constant", with("ip", Field{Value: "10.0.0.1", StripPort: true, Absent: []string{"-"}}), []string{
			`ingest.mappings.mygw.ip.absent: applies to a path, not to a constant value`,
			`ingest.mappings.mygw.ip.strip_port: applies to a path, not to a constant value`,
		}},
		{"bad layout", with("ts", Field{Path: "t", Format: "layout:15:04"}), []string{
			`ingest.mappings.mygw.ts.format: "layout:15:04": not a Go time layout with year, month and day`,
		}},
		{"empty layout", with("ts", Field{Path: "t", Format: "layout:"}), []string{
			`ingest.mappings.mygw.ts.format: "layout:": not a Go time layout`,
		}},
		{"empty key in path", with("route", Field{Path: "request..uri"}), []string{
			`ingest.mappings.mygw.route.path: "request..uri": empty key`,
		}},
		{"trailing dot", with("route", Field{Path: "request."}), []string{
			`ingest.mappings.mygw.route.path: "request.": empty key`,
		}},
		{"bad backslash", with("route", Field{Path: `request\uri`}), []string{
			`ingest.mappings.mygw.route.path: "request\\uri": a backslash must be followed by`,
		}},
		{"a stored field at api_key's path", Spec{
			"ts": {Path: "ts"}, "api_key": {Path: "headers.x-api-key"}, "key_id": {Path: "headers.x-api-key"},
			"route": {Path: "headers.x-api-key"}, "status": {Path: "headers.x-api-key"},
		}, []string{
			`ingest.mappings.mygw.key_id.path: "headers.x-api-key" is api_key's path too: the raw key would be stored as key_id`,
			`ingest.mappings.mygw.route.path: "headers.x-api-key" is api_key's path too: the raw key would be stored as route`,
		}},
		{"several problems, sorted", Spec{"ts": {Format: "x"}, "key_id": {Path: "k", StripPort: true}, "zzz": {}}, []string{
			`ingest.mappings.mygw.key_id.strip_port: only ip takes strip_port`,
			`ingest.mappings.mygw.ts.format: "x": want auto`,
			`ingest.mappings.mygw.ts: neither path nor value is set`,
			`ingest.mappings.mygw.zzz: not a field of the event contract`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Compile("ingest.mappings.mygw", tc.spec)
			if err == nil {
				t.Fatalf("Compile = %v, want errors", m)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("Compile errors:\n%s\nwant %d:\n%s", err, len(tc.want), strings.Join(tc.want, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCompileAt(t *testing.T) {
	_, err := Compile("", Spec{"ts": {Path: "t", Format: "nope"}, "api_key": {Path: "k"}})
	if err == nil || !strings.HasPrefix(err.Error(), `ts.format: "nope"`) {
		t.Errorf("Compile with at \"\" = %v, want a problem at ts.format", err)
	}
}

func TestCompileOK(t *testing.T) {
	for _, spec := range []Spec{
		{"ts": {Path: "t"}, "api_key": {Path: "k"}},
		{"ts": {Path: "t", Format: "auto"}, "key_id": {Value: "k"}, "status": {Path: "s", Format: "number"}},
		{"ts": {Path: "t", Format: "layout:02 Jan 06 15:04 MST"}, "key_id": {Path: `a\.b.c\\d`},
			"outcome": {Path: "o", Values: map[string]string{"": "ok", "deny": "forbidden"}}, "ip": {Path: "ip", StripPort: true}},
	} {
		if _, err := Compile("x", spec); err != nil {
			t.Errorf("Compile(%v): %v", spec, err)
		}
	}
}

func TestBuiltins(t *testing.T) {
	names := BuiltinNames()
	if want := []string{"aws-apigateway", "envoy", "keywatch", "kong", "nginx", "tyk"}; !slices.Equal(names, want) {
		t.Errorf("BuiltinNames = %v, want %v", names, want)
	}
	for _, name := range names {
		spec, ok := Builtin(name)
		if !ok {
			t.Fatalf("Builtin(%q) not found", name)
		}
		if _, err := Compile("builtin."+name, spec); err != nil {
			t.Errorf("Compile(builtin %s): %v", name, err)
		}
		spec["ts"] = Field{} // the caller may change its copy
		if again, _ := Builtin(name); again["ts"].Path == "" {
			t.Errorf("Builtin(%q) returned a shared spec", name)
		}
	}
	if _, ok := Builtin("apache"); ok {
		t.Error(`Builtin("apache") found`)
	}
	spec, _ := Builtin("keywatch")
	if len(spec) != numFields {
		t.Errorf("keywatch spec has %d fields, want %d", len(spec), numFields)
	}
}

// golden is a Record as a sample's .want.json writes it, in the contract's terms.
type golden struct {
	TS        string `json:"ts"`
	KeyID     string `json:"key_id"`
	APIKey    string `json:"api_key"`
	ClientID  string `json:"client_id"`
	Outcome   string `json:"outcome"`
	Status    int    `json:"status"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	Method    string `json:"method"`
	Route     string `json:"route"`
	RequestID string `json:"request_id"`
	Gateway   string `json:"gateway"`
}

// TestBuiltinSamples reads every testdata/<builtin>/<name>.json with its built-in mapping and
// compares the result with <name>.want.json.
func TestBuiltinSamples(t *testing.T) {
	for _, name := range BuiltinNames() {
		if name == "keywatch" {
			continue
		}
		spec, _ := Builtin(name)
		m := mustCompile(t, spec)
		files, err := filepath.Glob(filepath.Join("testdata", name, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, ".want.json") })
		if len(files) < 3 {
			t.Errorf("%s: %d samples, want at least 3", name, len(files))
		}
		for _, file := range files {
			t.Run(name+"/"+filepath.Base(file), func(t *testing.T) {
				msg, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				wantJSON, err := os.ReadFile(strings.TrimSuffix(file, ".json") + ".want.json")
				if err != nil {
					t.Fatal(err)
				}
				var want golden
				dec := json.NewDecoder(strings.NewReader(string(wantJSON)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&want); err != nil {
					t.Fatalf("want file: %v", err)
				}
				r, err := m.Extract(msg)
				if err != nil {
					t.Fatalf("Extract: %v", err)
				}
				got := golden{KeyID: r.KeyID, APIKey: r.APIKey, ClientID: r.ClientID, Outcome: r.Outcome, Status: r.Status,
					IP: r.IP, UserAgent: r.UserAgent, Method: r.Method, Route: r.Route, RequestID: r.RequestID, Gateway: r.Gateway}
				if !r.TS.IsZero() {
					if r.TS.Location() != time.UTC {
						t.Errorf("TS %v is not UTC", r.TS)
					}
					got.TS = r.TS.Format(time.RFC3339Nano)
				}
				if got != want {
					t.Errorf("Extract:\ngot  %+v\nwant %+v", got, want)
				}
			})
		}
	}
}
