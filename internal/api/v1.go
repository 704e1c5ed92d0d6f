package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/rotation"
)

// LifecycleStore stores a lifecycle event posted to /v1/lifecycle.
type LifecycleStore interface {
	StoreLifecycle(ctx context.Context, ev rotation.Event) error
}

// ReadinessGate answers whether a key is safe to retire.
type ReadinessGate interface {
	Readiness(ctx context.Context, now time.Time, keyID string) (detect.Readiness, error)
}

// Scope is what a bearer token may do; each scope may do what the ones below it may.
type Scope int

// Scopes, lowest first.
const (
	// ScopeRead may GET: key readiness, silences, /readyz's errors.
	ScopeRead Scope = iota + 1
	// ScopeWrite may also post lifecycle events and create or expire silences.
	ScopeWrite
	// ScopeAdmin may also revoke and roll back keys, reload the configuration and read it.
	ScopeAdmin
)

func (s Scope) String() string {
	return [...]string{"none", "read", "write", "admin"}[s]
}

// Tokens are the bearer tokens, one per scope; an empty one is not accepted.
type Tokens struct {
	Admin, Write, Read string
}

func (t Tokens) none() bool { return t == Tokens{} }

// Refusals is told of every request refused for a missing or wrong token (refusal.Log).
type Refusals interface {
	Refuse(r *http.Request, source, reason string)
}

// V1 is what the /v1 endpoints need. Every /v1 request but /v1/leaks must carry
// "Authorization: Bearer <token>" of a scope that allows it; with no token configured those
// endpoints answer 403. A nil handler leaves its endpoint unregistered (404).
type V1 struct {
	Tokens    Tokens
	Lifecycle LifecycleStore
	Readiness ReadinessGate
	// Revoke serves POST /v1/keys/{id}/revoke (a manual revoke through policy and guardrails).
	Revoke http.Handler
	// Rollback serves POST /v1/keys/{id}/rollback (a manual extend_grace or reactivate).
	Rollback http.Handler
	// Silences serves GET and POST /v1/silences and DELETE /v1/silences/{id}.
	Silences http.Handler
	// Leaks serves POST /v1/leaks; it checks its own signatures or token, so no bearer is asked.
	Leaks http.Handler
	// Refusals, when set, counts and logs the requests refused for their token.
	Refusals Refusals
}

const maxLifecycleBody = 64 << 10

func (v V1) register(mux *http.ServeMux) {
	mux.Handle("POST /v1/lifecycle", v.authorized(ScopeWrite, http.HandlerFunc(v.postLifecycle)))
	mux.Handle("GET /v1/keys/{id}/readiness", v.authorized(ScopeRead, validID(http.HandlerFunc(v.getReadiness))))
	if v.Revoke != nil {
		mux.Handle("POST /v1/keys/{id}/revoke", v.authorized(ScopeAdmin, validID(v.Revoke)))
	}
	if v.Rollback != nil {
		mux.Handle("POST /v1/keys/{id}/rollback", v.authorized(ScopeAdmin, validID(v.Rollback)))
	}
	if v.Silences != nil {
		mux.Handle("GET /v1/silences", v.authorized(ScopeRead, v.Silences))
		mux.Handle("POST /v1/silences", v.authorized(ScopeWrite, v.Silences))
		mux.Handle("DELETE /v1/silences/{id}", v.authorized(ScopeWrite, v.Silences))
	}
	if v.Leaks != nil {
		mux.Handle("POST /v1/leaks", v.Leaks)
	}
}

// scope returns the scope of r's bearer token; ok is false for no token or a wrong one. The
// scheme is case-insensitive (RFC 7235), and every configured token is compared in constant time.
func (v V1) scope(r *http.Request) (s Scope, ok bool) {
	scheme, got, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return 0, false
	}
	got = strings.TrimSpace(got)
	for _, t := range []struct {
		tok   string
		scope Scope
	}{{v.Tokens.Admin, ScopeAdmin}, {v.Tokens.Write, ScopeWrite}, {v.Tokens.Read, ScopeRead}} {
		if t.tok != "" && subtle.ConstantTimeCompare([]byte(got), []byte(t.tok)) == 1 {
			s = max(s, t.scope)
		}
	}
	return s, s > 0
}

// authorized serves next to requests whose token allows need. Refusals are counted and logged
// (rate-limited) and cost nothing else: no storage is written and nothing is waited for.
func (v V1) authorized(need Scope, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v.Tokens.none() {
			v.refuse(r, "no token configured")
			WriteError(w, http.StatusForbidden, "the /v1 API and /-/reload are off: set KEYWATCH_HTTP_TOKEN or http.token_file")
			return
		}
		scope, ok := v.scope(r)
		if !ok {
			v.refuse(r, "missing or wrong token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="keywatch"`)
			WriteError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		if scope < need {
			v.refuse(r, "token scope too low")
			WriteError(w, http.StatusForbidden, fmt.Sprintf("this token's scope is %s; %s %s needs %s", scope, r.Method, r.Pattern, need))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (v V1) refuse(r *http.Request, reason string) {
	if v.Refusals != nil {
		v.Refusals.Refuse(r, "api", reason)
	}
}

// validID answers 400 for a path {id} that is no valid key id (ingest.ValidateID).
func validID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := ingest.ValidateID("key_id", r.PathValue("id")); err != nil {
			WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// postLifecycle stores one lifecycle event (contract 3.2). The same body posted twice is stored
// once, so a client may retry until it gets a 2xx.
func (v V1) postLifecycle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLifecycleBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		WriteError(w, http.StatusRequestEntityTooLarge, "body larger than 64 KiB")
		return
	case err != nil:
		WriteError(w, http.StatusBadRequest, "read the body: "+err.Error())
		return
	}
	ev, err := ingest.DecodeLifecycle(body)
	if err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := v.Lifecycle.StoreLifecycle(r.Context(), ev); err != nil {
		WriteError(w, http.StatusServiceUnavailable, "not stored, retry: "+err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "stored", "key_id": ev.KeyID, "type": string(ev.Type)})
}

// getReadiness answers 200 with the report whether safe or not (the body's "safe" says which),
// 404 for a key keywatch knows nothing of.
func (v V1) getReadiness(w http.ResponseWriter, r *http.Request) {
	rep, err := v.Readiness.Readiness(r.Context(), time.Now(), r.PathValue("id"))
	switch {
	case errors.Is(err, detect.ErrUnknownKey):
		WriteError(w, http.StatusNotFound, err.Error())
	case err != nil:
		WriteError(w, http.StatusServiceUnavailable, err.Error())
	default:
		WriteJSON(w, http.StatusOK, rep)
	}
}

// WriteJSON answers with v as JSON and status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers {"error": msg} with status code.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, map[string]string{"error": msg})
}
