package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The event types, stable names that endpoints subscribe to (webhooks[].events) and that every
// payload's "type" holds. docs/webhooks.md shows each one's data.
const (
	TypeAlertFiring        = "alert.firing"
	TypeAlertResolved      = "alert.resolved"
	TypeDigestSent         = "digest.sent"
	TypeRotationSafeRetire = "rotation.safe_to_retire"
	TypeActionRevoke       = "action.revoke"
	TypeActionRollback     = "action.rollback"
)

// Types lists every event type.
func Types() []string {
	return []string{TypeAlertFiring, TypeAlertResolved, TypeDigestSent, TypeRotationSafeRetire, TypeActionRevoke, TypeActionRollback}
}

// Event is one notification webhook as its producer publishes it.
type Event struct {
	// ID is the event's identity and the webhook-id of every attempt to deliver it: derived from
	// what happened (EventID), so that publishing it again (a retry, a restart, a new leader)
	// stores and sends nothing more.
	ID   string
	Type string
	// Timestamp is when it happened (not when it is sent): part of the body, so it must be
	// derived from stored state too.
	Timestamp time.Time
	// Data is the event's data, encoded as a JSON object.
	Data any
	// Follows, when set, is the event this one comes after (alert.resolved after its
	// alert.firing): an endpoint that receives Follows' type gets this event only if it got
	// that one, and only after it was delivered or given up on.
	Follows *Ref
}

// Ref names an event by its id and type.
type Ref struct{ ID, Type string }

// EventID derives an event id from the parts that identify what happened: "msg_" and 32 hex
// digits of their SHA-256.
func EventID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return "msg_" + hex.EncodeToString(h[:16])
}

// Payload is the JSON body of every notification webhook: a versioned envelope, as Standard
// Webhooks recommends; Data's fields are the event type's.
type Payload struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Body is the bytes every attempt to deliver e sends.
func (e Event) Body() ([]byte, error) {
	if e.ID == "" || e.Type == "" {
		return nil, errors.New("webhook: an event needs an id and a type")
	}
	data, err := marshal(e.Data)
	if err != nil {
		return nil, fmt.Errorf("webhook: encode the data of %s event %s: %w", e.Type, e.ID, err)
	}
	if len(data) == 0 || data[0] != '{' {
		return nil, fmt.Errorf("webhook: the data of %s event %s is not a JSON object", e.Type, e.ID)
	}
	b, err := marshal(Payload{Type: e.Type, Timestamp: e.Timestamp.UTC().Truncate(time.Millisecond), Data: data})
	if err != nil {
		return nil, fmt.Errorf("webhook: encode %s event %s: %w", e.Type, e.ID, err)
	}
	return b, nil
}

// marshal is json.Marshal without escaping <, > and &: ids such as rotation ids hold ">".
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
