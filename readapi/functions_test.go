package readapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/rotation"
)

// TestFunctionsBuildWhatTheHandlersAnswer: KeyOf, RotationOf and RotationList give the resources
// GET /v1/keys/{id}, /v1/rotations/{id} and /v1/rotations answer, and refuse what the handlers
// refuse with ErrNotFound or ErrBadRequest.
func TestFunctionsBuildWhatTheHandlersAnswer(t *testing.T) {
	s := newRotationScenario(t)
	ctx := t.Context()
	// same says v marshals to the JSON GET path answers.
	same := func(path string, v any) {
		t.Helper()
		code, body := s.get(path, nil)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var got, want any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(body), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GET %s answers\n%s\nthe function gives\n%s", path, body, b)
		}
	}
	for _, id := range []string{"kid_old", "kid_new"} {
		k, err := s.api.KeyOf(ctx, id)
		if err != nil {
			t.Fatalf("KeyOf(%s): %v", id, err)
		}
		same("/v1/keys/"+id, k)
	}
	r, err := s.api.RotationOf(ctx, "kid_old>kid_new")
	if err != nil {
		t.Fatalf("RotationOf: %v", err)
	}
	if len(r.BurnDown.Clients) == 0 || r.Readiness == nil || len(r.Stragglers) == 0 {
		t.Errorf("RotationOf: %+v, want a burn-down, a readiness and stragglers", r)
	}
	same("/v1/rotations/"+url.PathEscape("kid_old>kid_new"), r)

	// A second rotation, so that a limit cuts the list.
	s.lifecycle(rotation.Event{TS: s.h0, Type: rotation.KeyRotationStarted, KeyID: "kid_new", ClientID: "acme", NewKeyID: "kid_newer"})
	for _, limit := range []int{1, 50} {
		list, err := s.api.RotationList(ctx, limit)
		if err != nil {
			t.Fatalf("RotationList(%d): %v", limit, err)
		}
		var page Rotations
		if code, body := s.get(fmt.Sprintf("/v1/rotations?limit=%d", limit), &page); code != 200 {
			t.Fatalf("GET /v1/rotations: %d %s", code, body)
		}
		if len(list) != min(limit, 2) || !reflect.DeepEqual(list, page.Rotations) {
			t.Errorf("RotationList(%d): %+v, want the page %+v", limit, list, page.Rotations)
		}
	}

	for _, c := range []struct {
		name string
		call func() error
		kind error
		path string // the handler's answer, the function's reason
	}{
		{"KeyOf(kid_nobody)", func() error { _, err := s.api.KeyOf(ctx, "kid_nobody"); return err }, ErrNotFound, "/v1/keys/kid_nobody"},
		{"KeyOf(kid\\x00)", func() error { _, err := s.api.KeyOf(ctx, "kid\x00"); return err }, ErrBadRequest, "/v1/keys/kid%00"},
		{"RotationOf(kid_old>kid_other)", func() error { _, err := s.api.RotationOf(ctx, "kid_old>kid_other"); return err }, ErrNotFound,
			"/v1/rotations/" + url.PathEscape("kid_old>kid_other")},
		{"RotationOf(kid_old)", func() error { _, err := s.api.RotationOf(ctx, "kid_old"); return err }, ErrBadRequest, "/v1/rotations/kid_old"},
		{"RotationOf(kid\\x1b>kid)", func() error { _, err := s.api.RotationOf(ctx, "kid\x1b>kid"); return err }, ErrBadRequest,
			"/v1/rotations/" + url.PathEscape("kid\x1b>kid")},
		{"RotationList(0)", func() error { _, err := s.api.RotationList(ctx, 0); return err }, ErrBadRequest, ""},
		{"RotationList(501)", func() error { _, err := s.api.RotationList(ctx, MaxLimit+1); return err }, ErrBadRequest, ""},
	} {
		err := c.call()
		if !errors.Is(err, c.kind) || errors.Is(err, map[error]error{ErrNotFound: ErrBadRequest, ErrBadRequest: ErrNotFound}[c.kind]) {
			t.Errorf("%s: %v, want %v", c.name, err, c.kind)
			continue
		}
		if c.path == "" {
			continue
		}
		var answer struct{ Error string }
		code, body := s.get(c.path, nil)
		if err := json.Unmarshal([]byte(body), &answer); err != nil {
			t.Fatalf("GET %s: %d %s: %v", c.path, code, body, err)
		}
		if want := map[error]int{ErrNotFound: 404, ErrBadRequest: 400}[c.kind]; code != want || answer.Error+": "+c.kind.Error() != err.Error() {
			t.Errorf("GET %s: %d %s; want %d and %s's reason %q", c.path, code, body, want, c.name, err)
		}
	}
	var de *ingest.DecodeError
	if _, err := s.api.KeyOf(ctx, "kid\x00"); !errors.As(err, &de) || !strings.Contains(err.Error(), "key_id") {
		t.Errorf("KeyOf(kid\\x00): %v, want ingest.ValidateID's error", err)
	}
}
