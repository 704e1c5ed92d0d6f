package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/slack-go/slack"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/refusal"
)

// Person is who approves an action (action.Person, the identical type: notify cannot import
// action): Source is where they acted ("slack" here), ID their identity there (a Slack user id),
// Name what is shown (may be empty: ID is shown).
type Person = struct{ Source, ID, Name string }

// Approver applies approvals from Slack once, and audits approvals refused to a Slack user.
type Approver interface {
	// Approve approves the action once for by; the text says what happened, to show in Slack.
	Approve(ctx context.Context, actionID string, by Person) (string, error)
	// Rejected audits an authenticated request that was refused: a click, signed by Slack, of a
	// workspace member who is not in slack.approvers (source "slack", reason "user_not_allowed").
	// It is worth the write: it names who tried to approve what, only a Slack workspace can send
	// it, at the pace people click, and a replayed one is refused before. Requests refused before
	// they are authenticated never reach it: they go to the Refuser, which writes nothing.
	Rejected(ctx context.Context, source, reason, detail string)
}

// Refuser is told of every request refused before it is authenticated (*refusal.Log): it counts
// and logs them, a few a minute, cut short; it writes nothing and waits on nothing.
type Refuser interface {
	Refuse(r *http.Request, source, reason string)
}

// Reasons of the requests refused before they are authenticated: label values of
// keywatch_http_refused_total{source="slack"} and keywatch_slack_interactions_total, and the body
// of the answer.
const (
	refusedOff          = "off"             // slack.signing_secret is not set
	refusedBadSignature = "bad_signature"   // a missing or malformed timestamp or signature, or a wrong signature
	refusedStale        = "stale_timestamp" // more than signatureWindow from our clock
	refusedTooLarge     = "body_too_large"  // over maxBody
	refusedUnreadable   = "bad_request"     // the body could not be read
	refusedReplay       = "replay"          // a signed request already received, by any replica
)

const (
	// signatureWindow is how far a request's timestamp may be from now (Slack's rule).
	signatureWindow = 5 * time.Minute
	// maxBody is the largest body read; Slack's payloads are a few kilobytes.
	maxBody = 1 << 20
	// replayCheckTimeout bounds the replay check in ClickHouse: Slack wants an answer within 3 s,
	// and the Approver has 2 s of them.
	replayCheckTimeout = 750 * time.Millisecond
)

// Interactions is the http.Handler of POST /slack/interactions: it verifies Slack's signature,
// refuses replays (on every replica, through ClickHouse) and users not in slack.approvers, and
// passes "Revoke now" and "Roll back" clicks to the Approver.
type Interactions struct {
	secret    string
	approvers []string
	approver  Approver
	refusals  Refuser
	replays   replayRecorder
	metrics   *Metrics
	log       *slog.Logger
	now       func() time.Time
	http      *http.Client

	mu   sync.Mutex
	seen map[string]time.Time // MAC (lower-case hex) -> when it stops mattering
}

// NewInteractions returns the handler. conn is where the MACs of the requests received are shared
// between replicas (table slack_interaction_macs); refusals is told of the requests refused before
// they are authenticated (nil: they are only counted in metrics).
func NewInteractions(conn driver.Conn, cfg config.Slack, approver Approver, refusals Refuser, metrics *Metrics, log *slog.Logger) *Interactions {
	return &Interactions{
		secret: cfg.SigningSecret, approvers: cfg.Approvers, approver: approver, refusals: refusals,
		replays: replayStore{conn: conn}, metrics: metrics, log: log,
		now: time.Now, http: &http.Client{Timeout: 10 * time.Second}, seen: map[string]time.Time{},
	}
}

// refuse answers a request refused before it is authenticated. It costs the same whatever was
// sent and whether or not ClickHouse is up: a counter, and the Refuser's short log line. reason is
// one of the constants above.
func (h *Interactions) refuse(w http.ResponseWriter, r *http.Request, status int, reason string) {
	h.metrics.interaction(reason)
	if h.refusals != nil {
		h.refusals.Refuse(r, "slack", reason)
	}
	http.Error(w, reason, status)
}

// decline answers an authenticated request (signed by Slack) that asks for nothing keywatch does.
// detail is logged cut short: it holds what the payload said.
func (h *Interactions) decline(w http.ResponseWriter, status int, reason, detail string) {
	h.metrics.interaction(reason)
	h.log.Warn("notify: Slack interaction declined", "reason", reason, "detail", refusal.Cut(detail))
	http.Error(w, reason, status)
}

func (h *Interactions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.secret == "" { // an empty HMAC key would let anyone sign
		h.refuse(w, r, http.StatusForbidden, refusedOff)
		return
	}
	// The headers first: a request without a fresh timestamp and a well-formed signature is
	// refused before its body is read.
	tsText := r.Header.Get("X-Slack-Request-Timestamp")
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		h.refuse(w, r, http.StatusUnauthorized, refusedBadSignature)
		return
	}
	sig, ok := parseSignature(r.Header.Get("X-Slack-Signature"))
	if !ok {
		h.refuse(w, r, http.StatusUnauthorized, refusedBadSignature)
		return
	}
	now := h.now()
	if d := now.Sub(time.Unix(ts, 0)); d > signatureWindow || d < -signatureWindow {
		h.refuse(w, r, http.StatusUnauthorized, refusedStale)
		return
	}
	if r.ContentLength > maxBody {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, refusedTooLarge)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, refusedUnreadable)
		return
	}
	if len(body) > maxBody {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, refusedTooLarge)
		return
	}
	mac := requestMAC(h.secret, tsText, body)
	if !hmac.Equal(mac, sig) {
		h.refuse(w, r, http.StatusUnauthorized, refusedBadSignature)
		return
	}
	// Authenticated: Slack signed this body at this time. The replay check keys on the MAC's
	// bytes, so a signature written in other hex digits' case is the same request.
	replay, err := h.replayed(r, hex.EncodeToString(mac), time.Unix(ts, 0), now)
	if err != nil {
		h.metrics.interaction("unavailable")
		h.log.Error("notify: cannot check a Slack interaction for replays; refused, the click can be repeated", "err", err)
		http.Error(w, "cannot check for replays: try again", http.StatusServiceUnavailable)
		return
	}
	if replay {
		h.refuse(w, r, http.StatusForbidden, refusedReplay)
		return
	}
	h.authenticated(w, r, body)
}

// authenticated handles a request whose signature verified and that was not received before.
func (h *Interactions) authenticated(w http.ResponseWriter, r *http.Request, body []byte) {
	form, err := parseForm(body)
	if err != nil {
		h.decline(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form), &cb); err != nil {
		h.decline(w, http.StatusBadRequest, "bad_request", "payload: "+err.Error())
		return
	}
	var action *slack.BlockAction
	links := 0
	for _, a := range cb.ActionCallback.BlockActions {
		if approves(a.ActionID) {
			action = a
			break
		}
		if a.ActionID == grafanaActionID {
			links++
		}
	}
	if action == nil && links > 0 && links == len(cb.ActionCallback.BlockActions) {
		// A click on the Grafana button: Slack opens the link and tells us; it wants a 200.
		h.metrics.interaction("link")
		w.WriteHeader(http.StatusOK)
		return
	}
	if action == nil || action.Value == "" {
		ids := make([]string, 0, len(cb.ActionCallback.BlockActions))
		for _, a := range cb.ActionCallback.BlockActions {
			ids = append(ids, a.ActionID)
		}
		h.decline(w, http.StatusBadRequest, "unknown_action", fmt.Sprintf("type %s, actions %v, user %s", cb.Type, ids, cb.User.ID))
		return
	}
	if !slices.Contains(h.approvers, cb.User.ID) {
		detail := refusal.Cut(fmt.Sprintf("user %s (%s) is not in slack.approvers; action %s", cb.User.ID, cb.User.Name, action.Value))
		h.metrics.interaction("user_not_allowed")
		h.log.Warn("notify: Slack approval refused", "reason", "user_not_allowed", "detail", detail)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
		h.approver.Rejected(ctx, "slack", "user_not_allowed", detail)
		cancel()
		http.Error(w, "user_not_allowed", http.StatusForbidden)
		return
	}
	// Slack wants an answer within 3 s: the Approver only records the approval.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	text, err := h.approver.Approve(ctx, action.Value, Person{Source: "slack", ID: cb.User.ID, Name: cb.User.Name})
	cancel()
	if err != nil {
		h.metrics.interaction("error")
		h.log.Error("notify: approval failed", "action", refusal.Cut(action.Value), "user", refusal.Cut(cb.User.ID), "err", refusal.Cut(err.Error()))
		text = fmt.Sprintf(":warning: Approval of %s by %s failed: %s", mrkdwnValue(action.Value), mention(cb.User.ID), mrkdwnProse(err.Error()))
	} else {
		h.metrics.interaction("approved")
		h.log.Info("notify: approved from Slack", "action", refusal.Cut(action.Value), "user", refusal.Cut(cb.User.ID), "outcome", refusal.Cut(text))
		if text == "" {
			text = "approved"
		}
		// The Approver's text says what came of the click: approved, already decided, or refused
		// by a guardrail (a leaked key, an alert that stopped firing). It holds key ids and the
		// approver's Slack name: a value, escaped.
		text = fmt.Sprintf(":ballot_box_with_check: Clicked by %s: %s", mention(cb.User.ID), mrkdwnProse(text))
	}
	w.WriteHeader(http.StatusOK)
	if cb.ResponseURL != "" {
		go h.showApproval(cb, action.Value, text)
	}
}

// parseSignature decodes X-Slack-Signature, "v0=" and the hex of an HMAC-SHA256 in either case.
func parseSignature(header string) ([]byte, bool) {
	hexMAC, ok := strings.CutPrefix(header, "v0=")
	if !ok || len(hexMAC) != 2*sha256.Size {
		return nil, false
	}
	mac, err := hex.DecodeString(hexMAC)
	return mac, err == nil
}

// requestMAC is Slack's signature of a request: HMAC-SHA256 of "v0:<timestamp>:<body>".
func requestMAC(secret, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + timestamp + ":"))
	m.Write(body)
	return m.Sum(nil)
}

// replayed reports whether the signed request whose MAC is mac was received before, by this
// replica (memory, the cheap first check) or another one (ClickHouse, replayStore.record), and
// records it.
//
// Between replicas the check and the record are one insert: ClickHouse keeps the first insert of
// a MAC (its insert_deduplication_token) and drops the others atomically, and a request goes on
// only when it then reads its own row. The window left: a request that records its MAC after the
// table's deduplication window (10,000 inserts) has passed since the first, whose read reaches a
// ClickHouse replica that has not received the first row yet (cluster mode, during a failover),
// and a TTL that dropped the first row early (a ClickHouse clock 5 minutes off). A request that
// gets through that way is still an approval of the same action: the action layer decides an
// action once and answers a second approval with "already decided", doing nothing
// (action.Revoker.Approve); the user sees that answer in Slack.
//
// When ClickHouse cannot say, the request is refused (the caller answers 503): Slack's click can be
// repeated, a replay must not pass, and the approval could not be recorded anyway.
func (h *Interactions) replayed(r *http.Request, mac string, ts, now time.Time) (bool, error) {
	if !h.firstSeen(mac, now) {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), replayCheckTimeout)
	defer cancel()
	first, err := h.replays.record(ctx, mac, ts)
	if err != nil {
		h.forget(mac) // not known to be received: the same request may be tried again
		return false, err
	}
	return !first, nil
}

// firstSeen records mac and reports whether it was new to this replica; MACs older than the
// window are forgotten (their timestamps fail the window check anyway).
func (h *Interactions) firstSeen(mac string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s, exp := range h.seen {
		if now.After(exp) {
			delete(h.seen, s)
		}
	}
	if _, ok := h.seen[mac]; ok {
		return false
	}
	h.seen[mac] = now.Add(2 * signatureWindow)
	return true
}

func (h *Interactions) forget(mac string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.seen, mac)
}

// showApproval replaces the message's "Revoke now" or "Roll back" button with who approved, through the
// interaction's response_url.
func (h *Interactions) showApproval(cb slack.InteractionCallback, actionID, text string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	blocks := approvedBlocks(cb.Message.Blocks.BlockSet, actionID, text)
	msg := &slack.WebhookMessage{Text: cb.Message.Text, Blocks: &slack.Blocks{BlockSet: blocks}, ReplaceOriginal: true}
	if err := slack.PostWebhookCustomHTTPContext(ctx, cb.ResponseURL, h.http, msg); err != nil {
		h.log.Warn("notify: cannot show the approval in the message", "action", refusal.Cut(actionID), "err", err)
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
