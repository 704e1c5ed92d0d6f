package action

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keywatch/keywatch/internal/api"
)

// revokeRequest is the body of POST /v1/keys/{id}/revoke.
type revokeRequest struct {
	Reason string `json:"reason"`
	Actor  string `json:"actor"`
}

// APIHandler serves POST /v1/keys/{id}/revoke (internal/api checks the bearer token before it):
// 202 with the action's status, 400 without a reason, 404 for an unknown key, 409 for a protected
// key, 429 when the hourly cap is reached.
func (r *Revoker) APIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			api.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "POST only"})
			return
		}
		key := req.PathValue("id")
		if key == "" { // mounted without a pattern: /v1/keys/{id}/revoke
			key = strings.TrimSuffix(strings.TrimPrefix(req.URL.Path, "/v1/keys/"), "/revoke")
		}
		var body revokeRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 64<<10)).Decode(&body); err != nil {
			api.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "want a JSON body {\"reason\": \"...\", \"actor\": \"...\"}: " + err.Error()})
			return
		}
		actor := "api"
		if a := strings.TrimSpace(body.Actor); a != "" {
			actor = "api:" + a
		}
		st, err := r.Manual(req.Context(), key, body.Reason, actor)
		switch {
		case errors.Is(err, ErrNoReason):
			api.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		case errors.Is(err, ErrUnknownKey):
			api.WriteJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		case errors.Is(err, ErrProtected):
			api.WriteJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "action": st})
		case errors.Is(err, ErrHourlyCap):
			api.WriteJSON(w, http.StatusTooManyRequests, map[string]any{"error": err.Error(), "action": st})
		case err != nil:
			r.log.Error("manual revoke failed", "key", key, "err", err)
			api.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		default:
			api.WriteJSON(w, http.StatusAccepted, st)
		}
	})
}

// rollbackRequest is the body of POST /v1/keys/{id}/rollback.
type rollbackRequest struct {
	Action string `json:"action"` // extend_grace (default) or reactivate
	Extend string `json:"extend"` // with extend_grace: a Go duration ("24h"); empty: rollback.extend_by
	Reason string `json:"reason"`
	Actor  string `json:"actor"`
}

// RollbackAPIHandler serves POST /v1/keys/{id}/rollback (internal/api checks the bearer token
// before it): 202 with the action's status, 400 for a bad action or extension, 404 for an unknown
// key, 409 for a key considered leaked (refused and audited).
func (r *Revoker) RollbackAPIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			api.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "POST only"})
			return
		}
		key := req.PathValue("id")
		if key == "" {
			key = strings.TrimSuffix(strings.TrimPrefix(req.URL.Path, "/v1/keys/"), "/rollback")
		}
		var body rollbackRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 64<<10)).Decode(&body); err != nil {
			api.WriteError(w, http.StatusBadRequest, `want a JSON body {"action": "extend_grace"|"reactivate", "extend": "24h", "reason": "...", "actor": "..."}: `+err.Error())
			return
		}
		kind := body.Action
		if kind == "" {
			kind = KindExtendGrace
		}
		if !IsRollback(kind) {
			api.WriteError(w, http.StatusBadRequest, fmt.Sprintf("action %q: want extend_grace or reactivate", body.Action))
			return
		}
		var extend time.Duration
		if body.Extend != "" {
			d, err := time.ParseDuration(body.Extend)
			if err != nil || d <= 0 || kind != KindExtendGrace {
				api.WriteError(w, http.StatusBadRequest, fmt.Sprintf("extend %q: want a positive duration such as 24h, with action extend_grace only", body.Extend))
				return
			}
			extend = d
		}
		actor := "api"
		if a := strings.TrimSpace(body.Actor); a != "" {
			actor = "api:" + a
		}
		st, err := r.ManualRollback(req.Context(), key, kind, extend, body.Reason, actor)
		switch {
		case errors.Is(err, ErrUnknownKey):
			api.WriteError(w, http.StatusNotFound, err.Error())
		case errors.Is(err, ErrLeaked):
			api.WriteJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "action": st})
		case err != nil:
			r.log.Error("manual rollback failed", "key", key, "err", err)
			api.WriteError(w, http.StatusInternalServerError, err.Error())
		default:
			api.WriteJSON(w, http.StatusAccepted, st)
		}
	})
}
