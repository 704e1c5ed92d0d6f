package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/rotation"
)

// LifecycleStore stores a lifecycle event posted to /v1/lifecycle (ingest.LifecycleWriter).
type LifecycleStore interface {
	StoreLifecycle(ctx context.Context, ev rotation.Event) error
}

// ReadinessGate answers whether a key is safe to retire (detect.Lingering).
type ReadinessGate interface {
	Readiness(ctx context.Context, now time.Time, keyID string) (detect.Readiness, error)
}

// ReadAPI serves the read-only resources (readapi.API).
type ReadAPI interface {
	Key(w http.ResponseWriter, r *http.Request)
	Rotations(w http.ResponseWriter, r *http.Request)
	Rotation(w http.ResponseWriter, r *http.Request)
	Alerts(w http.ResponseWriter, r *http.Request)
}

// routes are the handlers of the public listener beside /metrics, /healthz and /readyz, which the
// server keeps (package api). Every route but /v1/leaks and /slack/interactions, which check their
// own signatures, and /v1/openapi.json, which is public, wants a bearer token of the scope it
// names. A nil handler leaves its route unregistered (404).
type routes struct {
	Guard     api.Guard
	Lifecycle LifecycleStore
	Readiness ReadinessGate
	// Revoke and Rollback serve POST /v1/keys/{id}/revoke and /rollback (through policy and guardrails).
	Revoke, Rollback http.Handler
	// Silences serves GET and POST /v1/silences and DELETE /v1/silences/{id}.
	Silences http.Handler
	// Leaks serves POST /v1/leaks (GitHub's signature or the leak report token).
	Leaks http.Handler
	// Read serves GET /v1/keys/{id}, /v1/rotations, /v1/rotations/{id} and /v1/alerts.
	Read ReadAPI
	// OpenAPI serves GET /v1/openapi.json, the document describing every /v1 route, to anyone: it
	// is public API description and costs a constant answer.
	OpenAPI http.Handler
	// SlackInteractions serves POST /slack/interactions (Slack's request signature).
	SlackInteractions http.Handler
	// Reload serves POST /-/reload: it applies the configuration file again and returns why it
	// refused to, if it did.
	Reload func(ctx context.Context) error
	// Config serves GET /-/config: the configuration in effect, secrets hidden.
	Config func() string
	// Console serves the web console under /console/ (its own sessions, CSRF tokens and headers).
	Console http.Handler
}

// route is one route of the router: its pattern (method and path) and its handler, the token's
// scope already required.
type route struct {
	pattern string
	handler http.Handler
}

// table is the router: the one place that names every route, its scope and its handler. Routes
// whose handler is nil are left out (404).
func (rt routes) table() []route {
	var t []route
	add := func(pattern string, h http.Handler) { t = append(t, route{pattern, h}) }
	g := rt.Guard
	if rt.Lifecycle != nil {
		add("POST /v1/lifecycle", g.Require(api.ScopeWrite, http.HandlerFunc(rt.postLifecycle)))
	}
	if rt.Readiness != nil {
		add("GET /v1/keys/{id}/readiness", g.Require(api.ScopeRead, validID(http.HandlerFunc(rt.getReadiness))))
	}
	if rt.Revoke != nil {
		add("POST /v1/keys/{id}/revoke", g.Require(api.ScopeAdmin, validID(rt.Revoke)))
	}
	if rt.Rollback != nil {
		add("POST /v1/keys/{id}/rollback", g.Require(api.ScopeAdmin, validID(rt.Rollback)))
	}
	if rt.Silences != nil {
		add("GET /v1/silences", g.Require(api.ScopeRead, rt.Silences))
		add("POST /v1/silences", g.Require(api.ScopeWrite, rt.Silences))
		add("DELETE /v1/silences/{id}", g.Require(api.ScopeWrite, rt.Silences))
	}
	if rt.Leaks != nil {
		add("POST /v1/leaks", rt.Leaks)
	}
	if rt.Read != nil {
		add("GET /v1/keys/{id}", g.Require(api.ScopeRead, validID(http.HandlerFunc(rt.Read.Key))))
		add("GET /v1/rotations", g.Require(api.ScopeRead, http.HandlerFunc(rt.Read.Rotations)))
		add("GET /v1/rotations/{id}", g.Require(api.ScopeRead, http.HandlerFunc(rt.Read.Rotation)))
		add("GET /v1/alerts", g.Require(api.ScopeRead, http.HandlerFunc(rt.Read.Alerts)))
	}
	if rt.OpenAPI != nil {
		add("GET /v1/openapi.json", rt.OpenAPI)
	}
	if rt.SlackInteractions != nil {
		add("POST /slack/interactions", rt.SlackInteractions)
	}
	if rt.Reload != nil {
		add("POST /-/reload", g.Require(api.ScopeAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := rt.Reload(r.Context()); err != nil {
				api.WriteError(w, http.StatusUnprocessableEntity, err.Error())
				return
			}
			api.WriteJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
		})))
	}
	if rt.Console != nil {
		add("/console/", rt.Console)
		add("GET /console", http.RedirectHandler("/console/", http.StatusMovedPermanently))
	}
	if rt.Config != nil {
		add("GET /-/config", g.Require(api.ScopeAdmin, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(rt.Config()))
		})))
	}
	return t
}

// handler serves the routes of table.
func (rt routes) handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range rt.table() {
		mux.Handle(r.pattern, r.handler)
	}
	return mux
}

// validID answers 400 for a path {id} that is no valid key id (ingest.ValidateID).
func validID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := ingest.ValidateID("key_id", r.PathValue("id")); err != nil {
			api.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}

const maxLifecycleBody = 64 << 10

// postLifecycle stores one lifecycle event (contract 3.2). The same body posted twice is stored
// once, so a client may retry until it gets a 2xx.
func (rt routes) postLifecycle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLifecycleBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		api.WriteError(w, http.StatusRequestEntityTooLarge, "body larger than 64 KiB")
		return
	case err != nil:
		api.WriteError(w, http.StatusBadRequest, "read the body: "+err.Error())
		return
	}
	ev, err := ingest.DecodeLifecycle(body)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := rt.Lifecycle.StoreLifecycle(r.Context(), ev); err != nil {
		api.WriteError(w, http.StatusServiceUnavailable, "not stored, retry: "+err.Error())
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]string{"status": "stored", "key_id": ev.KeyID, "type": string(ev.Type)})
}

// getReadiness answers 200 with the report whether safe or not (the body's "safe" says which),
// 404 for a key keywatch knows nothing of. A request that accepts text/plain and not JSON gets
// the report as `keywatch readiness` prints it, its first word SAFE, UNSAFE or GONE (what the
// GitHub Action in deploy/github-action reads without a JSON parser).
func (rt routes) getReadiness(w http.ResponseWriter, r *http.Request) {
	rep, err := rt.Readiness.Readiness(r.Context(), time.Now(), r.PathValue("id"))
	switch {
	case errors.Is(err, detect.ErrUnknownKey):
		api.WriteError(w, http.StatusNotFound, err.Error())
	case err != nil:
		api.WriteError(w, http.StatusServiceUnavailable, err.Error())
	case wantsText(r):
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		detect.WriteReadiness(w, rep)
	default:
		api.WriteJSON(w, http.StatusOK, rep)
	}
}

// wantsText says whether a request's Accept header names text/plain and not JSON.
func wantsText(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "text/plain") && !strings.Contains(accept, "application/json")
}
