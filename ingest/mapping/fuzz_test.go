package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"unicode/utf8"
)

// FuzzExtract checks that Extract never panics, agrees with encoding/json on what is valid JSON,
// and reads the same strings as encoding/json does into a map.
func FuzzExtract(f *testing.F) {
	f.Add([]byte(benchEvent))
	f.Add([]byte(`{"ts": 1795622400123.5, "key\u005fid": "k\ud83d\ude00", "status": 2e2, "ts": null}`))
	f.Add([]byte(`{"request": {"headers": {"apikey": "sk", "user-agent": "a\"b"}}, "request": 1}`))
	f.Add([]byte(`[1, {"a": [true, false, null, -0.5e-7]}]`))
	f.Add([]byte("{\"ts\": \"2026\xff\"}"))
	f.Add([]byte(`{"consumer": "x", "authenticated_entity": {"id": ["k"]}, "started_at": "1"}`))
	for _, file := range []string{"testdata/kong/key-auth-ok.json", "testdata/envoy/ok.json", "testdata/nginx/escaped-ua-unquoted-status.json"} {
		if msg, err := os.ReadFile(file); err == nil {
			f.Add(msg)
		}
	}
	var mappings []*Mapping
	var specs []Spec
	for _, name := range []string{"keywatch", "kong", "envoy"} {
		spec, _ := Builtin(name)
		mappings = append(mappings, mustCompile(f, spec))
		specs = append(specs, spec)
	}
	var texts []*Texts // kept from message to message
	for range mappings {
		texts = append(texts, NewTexts())
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		valid := json.Valid(msg)
		var m map[string]any
		if valid && utf8.Valid(msg) {
			// Numbers as json.Number: a number beyond float64 (1e700) is valid JSON, and
			// Unmarshal's error for it would read as "not an object".
			dec := json.NewDecoder(bytes.NewReader(msg))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil {
				m = nil // a valid value that is not an object
			}
		}
		for i, mp := range mappings {
			r, err := mp.Extract(msg)
			shared, sharedErr := mp.ExtractShared(msg, texts[i])
			if shared != r || fmt.Sprint(sharedErr) != fmt.Sprint(err) {
				t.Fatalf("ExtractShared = %+v, %v; Extract = %+v, %v", shared, sharedErr, r, err)
			}
			var e *Error
			if err != nil && !errors.As(err, &e) {
				t.Fatalf("Extract error %T, want *Error", err)
			}
			switch {
			case !valid && (err == nil || (e.Reason != ReasonInvalidJSON && e.Reason != ReasonInvalidUTF8)):
				t.Fatalf("json.Valid is false, Extract = %+v, %v", r, err)
			case valid && err == nil && m == nil:
				t.Fatalf("Extract read a JSON value that is not an object: %+v", r)
			case valid && err != nil && e.Reason == ReasonInvalidJSON:
				t.Fatalf("json.Valid is true, Extract = %v", err)
			case err == nil:
				checkAgainstMap(t, specs[i], r, m)
			}
		}
	})
}

// checkAgainstMap checks every plain string field of r against encoding/json's reading of the
// same message.
func checkAgainstMap(t *testing.T, spec Spec, r Record, m map[string]any) {
	for name, sf := range spec {
		f, _ := fieldByName(name)
		if sf.Path == "" || sf.StripPort || sf.Absent != nil || f == fTS || f == fStatus || f == fOutcome {
			continue
		}
		segs, _ := splitPath(sf.Path)
		var v any = m
		for _, s := range segs {
			obj, _ := v.(map[string]any)
			v = obj[s]
		}
		want, _ := v.(string)
		if got := *r.text(f); got != want {
			t.Fatalf("%s = %q, encoding/json reads %q", name, got, want)
		}
	}
}
