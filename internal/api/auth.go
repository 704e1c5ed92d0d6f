package api

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Scope is what a bearer token may do; each scope may do what the ones below it may.
type Scope int

// Scopes, lowest first.
const (
	// ScopeRead may GET: keys, their readiness, rotations, alerts, silences, /readyz's errors.
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

// Guard admits requests whose bearer token has the scope a route needs. Every route that wants
// a token is wrapped in Require; with no token configured those routes answer 403.
type Guard struct {
	Tokens Tokens
	// Refusals, when set, counts and logs the requests refused for their token.
	Refusals Refusals
}

// scope returns the scope of r's bearer token; ok is false for no token or a wrong one. The
// scheme is case-insensitive (RFC 7235).
func (v Guard) scope(r *http.Request) (s Scope, ok bool) {
	scheme, got, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return 0, false
	}
	return v.Tokens.Scope(strings.TrimSpace(got))
}

// Scope returns the scope of token; ok is false for a token that is none of t. Every configured
// token is compared in constant time.
func (t Tokens) Scope(token string) (s Scope, ok bool) {
	for _, c := range []struct {
		tok   string
		scope Scope
	}{{t.Admin, ScopeAdmin}, {t.Write, ScopeWrite}, {t.Read, ScopeRead}} {
		if c.tok != "" && subtle.ConstantTimeCompare([]byte(token), []byte(c.tok)) == 1 {
			s = max(s, c.scope)
		}
	}
	return s, s > 0
}

// Of returns the token of scope s ("" when none is configured).
func (t Tokens) Of(s Scope) string {
	switch s {
	case ScopeAdmin:
		return t.Admin
	case ScopeWrite:
		return t.Write
	case ScopeRead:
		return t.Read
	}
	return ""
}

// Require serves next to requests whose token allows need. Refusals are counted and logged
// (rate-limited) and cost nothing else: no storage is written, no body is read and nothing is
// waited for.
func (v Guard) Require(need Scope, next http.Handler) http.Handler {
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

func (v Guard) refuse(r *http.Request, reason string) {
	if v.Refusals != nil {
		v.Refusals.Refuse(r, "api", reason)
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
