package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/ingest"
)

// LifecycleStore stores a lifecycle event posted to /v1/lifecycle.
type LifecycleStore interface {
	StoreLifecycle(ctx context.Context, ev ingest.LifecycleEvent) error
}

// ReadinessGate answers whether a key is safe to retire.
type ReadinessGate interface {
	Readiness(ctx context.Context, now time.Time, keyID string) (detect.Readiness, error)
}

// V1 is what the /v1 endpoints need. Every /v1 request but /v1/leaks must carry
// "Authorization: Bearer <Token>"; with no token configured those endpoints answer 403.
// A nil handler leaves its endpoint unregistered (404).
type V1 struct {
	Token     string
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
	// Rejected, when set, is told of every request refused for a missing or wrong token, so the
	// refusal is audited.
	Rejected func(r *http.Request, reason string)
}

const maxLifecycleBody = 64 << 10

func (v V1) register(mux *http.ServeMux) {
	mux.Handle("POST /v1/lifecycle", v.authorized(http.HandlerFunc(v.postLifecycle)))
	mux.Handle("GET /v1/keys/{id}/readiness", v.authorized(http.HandlerFunc(v.getReadiness)))
	if v.Revoke != nil {
		mux.Handle("POST /v1/keys/{id}/revoke", v.authorized(v.Revoke))
	}
	if v.Rollback != nil {
		mux.Handle("POST /v1/keys/{id}/rollback", v.authorized(v.Rollback))
	}
	if v.Silences != nil {
		mux.Handle("GET /v1/silences", v.authorized(v.Silences))
		mux.Handle("POST /v1/silences", v.authorized(v.Silences))
		mux.Handle("DELETE /v1/silences/{id}", v.authorized(v.Silences))
	}
	if v.Leaks != nil {
		mux.Handle("POST /v1/leaks", v.Leaks)
	}
}

func (v V1) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v.Token == "" {
			v.reject(r, "no http.token configured")
			WriteError(w, http.StatusForbidden, "the /v1 API and /-/reload are off: set KEYWATCH_HTTP_TOKEN or http.token_file")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(v.Token)) != 1 {
			v.reject(r, map[bool]string{true: "wrong bearer token", false: "no bearer token"}[ok])
			w.Header().Set("WWW-Authenticate", `Bearer realm="keywatch"`)
			WriteError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (v V1) reject(r *http.Request, reason string) {
	if v.Rejected != nil {
		v.Rejected(r, reason)
	}
}

// postLifecycle stores one lifecycle event (contract 3.2). The same body posted twice is stored
// once, so a client may retry until it gets a 2xx.
func (v V1) postLifecycle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLifecycleBody))
	if err != nil {
		WriteError(w, http.StatusRequestEntityTooLarge, "body larger than 64 KiB")
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
