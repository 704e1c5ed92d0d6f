package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/internal/api"
)

// revokeRequest is the body of POST /v1/keys/{id}/revoke.
type revokeRequest struct {
	Reason string `json:"reason"`
	Actor  string `json:"actor"`
}

// APIHandler serves POST /v1/keys/{id}/revoke (internal/api checks the bearer token before it).
// The request is stored and the leader decides it (Manual); the handler waits up to
// DefaultAPIWait for the outcome (Await), then answers with the action's status: 200 sent, 202
// not decided yet or being retried (the leader carries on; the body has the action's id), 400
// without a reason, 404 for an unknown key, 409 for a protected key, 429 when the hourly cap is
// reached, 502 when the receiver refused it or stayed unreachable for revoke.retry_for.
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
		if errors.Is(err, ErrNoReason) {
			api.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		r.answer(w, req, "revoke", key, st, err)
	})
}

// answer waits up to r.apiWait for the outcome of the action a manual request made (st, err from
// Manual or ManualRollback) and writes it.
func (r *Revoker) answer(w http.ResponseWriter, req *http.Request, what, key string, st *alerting.ActionStatus, err error) {
	if err == nil {
		ctx, cancel := context.WithTimeout(req.Context(), r.apiWait)
		got, werr := r.Await(ctx, st.ID)
		cancel()
		if got != nil {
			st = got
		}
		err = werr
	}
	switch {
	case errors.Is(err, ErrUnknownKey):
		api.WriteJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case errors.Is(err, ErrProtected), errors.Is(err, ErrLeaked), errors.Is(err, ErrNotInRotation):
		api.WriteJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "action": st})
	case errors.Is(err, ErrHourlyCap):
		api.WriteJSON(w, http.StatusTooManyRequests, map[string]any{"error": err.Error(), "action": st})
	case st != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)):
		api.WriteJSON(w, http.StatusAccepted, st) // not decided or delivered yet: the leader carries on
	case err != nil && st != nil && st.Status == stateRefused:
		api.WriteJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "action": st})
	case err != nil:
		r.log.Error("manual "+what+" failed", "key", key, "err", err)
		api.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	case st.Status == stateSent:
		api.WriteJSON(w, http.StatusOK, st)
	case st.Status == stateFailed:
		api.WriteJSON(w, http.StatusBadGateway, map[string]any{"error": fmt.Sprintf("the %s of %s was not delivered: %s", what, key, st.Detail), "action": st})
	default:
		api.WriteJSON(w, http.StatusAccepted, st)
	}
}

// rollbackRequest is the body of POST /v1/keys/{id}/rollback.
type rollbackRequest struct {
	Action string `json:"action"` // extend_grace (default) or reactivate
	Extend string `json:"extend"` // with extend_grace: a Go duration ("24h"); empty: rollback.extend_by
	Reason string `json:"reason"`
	Actor  string `json:"actor"`
}

// RollbackAPIHandler serves POST /v1/keys/{id}/rollback (internal/api checks the bearer token
// before it). Like APIHandler, it waits up to DefaultAPIWait for the leader to deliver it: 200
// sent, 202 not delivered yet, 400 for a bad action or extension, 404 for an unknown key, 409 for
// a key in no rotation or considered leaked (refused and audited), 502 when the receiver refused
// it or stayed unreachable.
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
		r.answer(w, req, kind, key, st, err)
	})
}
