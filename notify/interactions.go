package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/keywatch/keywatch/internal/config"
)

// Approver applies approvals from Slack once and audits what was refused.
type Approver interface {
	// Approve approves the action once; the text says what happened, to show in Slack.
	Approve(ctx context.Context, actionID, slackUserID, slackUserName string) (string, error)
	// Rejected audits a refused request; source is "slack".
	Rejected(ctx context.Context, source, reason, detail string)
}

// signatureWindow is how far a request's timestamp may be from now (Slack's rule).
const signatureWindow = 5 * time.Minute

// Interactions is the http.Handler of POST /slack/interactions: it verifies Slack's signature,
// refuses replays and users not in slack.approvers, and passes "Revoke now" and "Roll back" clicks to
// the Approver.
type Interactions struct {
	secret    string
	approvers []string
	approver  Approver
	metrics   *Metrics
	log       *slog.Logger
	now       func() time.Time
	http      *http.Client

	mu   sync.Mutex
	seen map[string]time.Time // signature -> when it stops mattering
}

// NewInteractions returns the handler.
func NewInteractions(cfg config.Slack, approver Approver, metrics *Metrics, log *slog.Logger) *Interactions {
	return &Interactions{
		secret: cfg.SigningSecret, approvers: cfg.Approvers, approver: approver, metrics: metrics, log: log,
		now: time.Now, http: &http.Client{Timeout: 10 * time.Second}, seen: map[string]time.Time{},
	}
}

func (h *Interactions) reject(w http.ResponseWriter, r *http.Request, status int, reason, detail string) {
	h.metrics.interaction(reason)
	h.log.Warn("notify: Slack interaction rejected", "reason", reason, "detail", detail, "remote", r.RemoteAddr)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	h.approver.Rejected(ctx, "slack", reason, detail)
	http.Error(w, reason, status)
}

func (h *Interactions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.secret == "" { // an empty HMAC key would let anyone sign
		h.reject(w, r, http.StatusForbidden, "off", "slack.signing_secret is not set: interactions are off")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	// The window is checked against our own clock first (injectable), then slack-go checks it too.
	ts, err := strconv.ParseInt(r.Header.Get("X-Slack-Request-Timestamp"), 10, 64)
	if err != nil {
		h.reject(w, r, http.StatusUnauthorized, "bad_signature", "missing or malformed X-Slack-Request-Timestamp")
		return
	}
	now := h.now()
	if d := now.Sub(time.Unix(ts, 0)); d > signatureWindow || d < -signatureWindow {
		h.reject(w, r, http.StatusUnauthorized, "stale_timestamp", fmt.Sprintf("request timestamp %d is %s from now", ts, d.Round(time.Second)))
		return
	}
	v, err := slack.NewSecretsVerifier(r.Header, h.secret)
	if err == nil {
		_, _ = v.Write(body)
		err = v.Ensure()
	}
	if errors.Is(err, slack.ErrExpiredTimestamp) {
		h.reject(w, r, http.StatusUnauthorized, "stale_timestamp", err.Error())
		return
	}
	if err != nil {
		h.reject(w, r, http.StatusUnauthorized, "bad_signature", err.Error())
		return
	}
	if !h.firstSeen(r.Header.Get("X-Slack-Signature"), now) {
		h.reject(w, r, http.StatusForbidden, "replay", "this signed request was already received")
		return
	}
	form, err := parseForm(body)
	if err != nil {
		h.reject(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form), &cb); err != nil {
		h.reject(w, r, http.StatusBadRequest, "bad_request", "payload: "+err.Error())
		return
	}
	var action *slack.BlockAction
	for _, a := range cb.ActionCallback.BlockActions {
		if approves(a.ActionID) {
			action = a
			break
		}
	}
	if action == nil || action.Value == "" {
		ids := make([]string, 0, len(cb.ActionCallback.BlockActions))
		for _, a := range cb.ActionCallback.BlockActions {
			ids = append(ids, a.ActionID)
		}
		h.reject(w, r, http.StatusBadRequest, "unknown_action", fmt.Sprintf("type %s, actions %v, user %s", cb.Type, ids, cb.User.ID))
		return
	}
	if !slices.Contains(h.approvers, cb.User.ID) {
		h.reject(w, r, http.StatusForbidden, "user_not_allowed", fmt.Sprintf("user %s (%s) is not in slack.approvers; action %s", cb.User.ID, cb.User.Name, action.Value))
		return
	}
	// Slack wants an answer within 3 s: the Approver only records the approval.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	text, err := h.approver.Approve(ctx, action.Value, cb.User.ID, cb.User.Name)
	cancel()
	if err != nil {
		h.metrics.interaction("error")
		h.log.Error("notify: approval failed", "action", action.Value, "user", cb.User.ID, "err", err)
		text = fmt.Sprintf(":warning: Approval of %s by <@%s> failed: %v", action.Value, cb.User.ID, err)
	} else {
		h.metrics.interaction("approved")
		h.log.Info("notify: approved from Slack", "action", action.Value, "user", cb.User.ID, "outcome", text)
		if text == "" {
			text = "approved"
		}
		// The Approver's text says what came of the click: approved, already decided, or refused
		// by a guardrail (a leaked key, an alert that stopped firing).
		text = fmt.Sprintf(":ballot_box_with_check: Clicked by <@%s>: %s", cb.User.ID, text)
	}
	w.WriteHeader(http.StatusOK)
	if cb.ResponseURL != "" {
		go h.showApproval(cb, action.Value, text)
	}
}

// firstSeen records sig and reports whether it was new; signatures older than the window are
// forgotten (their timestamps fail the window check anyway).
func (h *Interactions) firstSeen(sig string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s, exp := range h.seen {
		if now.After(exp) {
			delete(h.seen, s)
		}
	}
	if _, ok := h.seen[sig]; ok {
		return false
	}
	h.seen[sig] = now.Add(2 * signatureWindow)
	return true
}

// showApproval replaces the message's "Revoke now" or "Roll back" button with who approved, through the
// interaction's response_url.
func (h *Interactions) showApproval(cb slack.InteractionCallback, actionID, text string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	blocks := approvedBlocks(cb.Message.Blocks.BlockSet, actionID, text)
	msg := &slack.WebhookMessage{Text: cb.Message.Text, Blocks: &slack.Blocks{BlockSet: blocks}, ReplaceOriginal: true}
	if err := slack.PostWebhookCustomHTTPContext(ctx, cb.ResponseURL, h.http, msg); err != nil {
		h.log.Warn("notify: cannot show the approval in the message", "action", actionID, "err", err)
	}
}

// approvedBlocks replaces the button of actionID with a context line saying text.
func approvedBlocks(blocks []slack.Block, actionID, text string) []slack.Block {
	out := make([]slack.Block, 0, len(blocks)+1)
	replaced := false
	for _, b := range blocks {
		ab, ok := b.(*slack.ActionBlock)
		if !ok || ab.Elements == nil {
			out = append(out, b)
			continue
		}
		var keep []slack.BlockElement
		hit := false
		for _, e := range ab.Elements.ElementSet {
			if btn, ok := e.(*slack.ButtonBlockElement); ok && approves(btn.ActionID) && btn.Value == actionID {
				hit = true
				continue
			}
			keep = append(keep, e)
		}
		if len(keep) > 0 {
			out = append(out, slack.NewActionBlock(ab.BlockID, keep...))
		}
		if hit {
			out = append(out, slack.NewContextBlock("", markdown(text)))
			replaced = true
		}
	}
	if !replaced {
		out = append(out, slack.NewContextBlock("", markdown(text)))
	}
	return out
}

func parseForm(body []byte) (string, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return "", fmt.Errorf("form: %w", err)
	}
	p := vals.Get("payload")
	if p == "" {
		return "", errors.New("form: no payload field")
	}
	return p, nil
}
