package action

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

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
