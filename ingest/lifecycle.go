package ingest

import (
	"encoding/json"
	"time"
)

// LifecycleType is the kind of a key lifecycle event (contract 3.2).
type LifecycleType string

// The lifecycle event types of contract 3.2.
const (
	KeyCreated         LifecycleType = "key.created"
	KeyRotationStarted LifecycleType = "key.rotation_started"
	KeyRetired         LifecycleType = "key.retired"
	KeyRevoked         LifecycleType = "key.revoked"
)

// LifecycleEvent is one change in a key's life, validated and ready to store.
type LifecycleEvent struct {
	TS         time.Time
	Type       LifecycleType
	KeyID      string
	ClientID   string
	NewKeyID   string
	GraceUntil *time.Time
	Reason     string
}

type rawLifecycle struct {
	TS         json.RawMessage `json:"ts"`
	Type       string          `json:"type"`
	KeyID      string          `json:"key_id"`
	ClientID   string          `json:"client_id"`
	NewKeyID   string          `json:"new_key_id"`
	GraceUntil json.RawMessage `json:"grace_until"`
	Reason     string          `json:"reason"`
}

// DecodeLifecycle turns one message into a LifecycleEvent.
func DecodeLifecycle(msg []byte) (LifecycleEvent, error) {
	var raw rawLifecycle
	if err := unmarshalStrict(msg, &raw); err != nil {
		return LifecycleEvent{}, err
	}
	ev := LifecycleEvent{Type: LifecycleType(raw.Type), KeyID: raw.KeyID, ClientID: raw.ClientID, NewKeyID: raw.NewKeyID, Reason: raw.Reason}
	var err error
	if ev.TS, err = parseTS("ts", raw.TS, true); err != nil {
		return LifecycleEvent{}, err
	}
	switch ev.Type {
	case KeyCreated, KeyRotationStarted, KeyRetired, KeyRevoked:
	case "":
		return LifecycleEvent{}, decodeErr(ReasonMissingField, "type: required")
	default:
		return LifecycleEvent{}, decodeErr(ReasonInvalidValue, "type: %q is not one of key.created, key.rotation_started, key.retired, key.revoked", truncate(raw.Type, 40))
	}
	if ev.KeyID == "" {
		return LifecycleEvent{}, decodeErr(ReasonMissingField, "key_id: required")
	}
	if ev.Type == KeyRotationStarted && ev.NewKeyID == "" {
		return LifecycleEvent{}, decodeErr(ReasonMissingField, "new_key_id: required with key.rotation_started")
	}
	grace, err := parseTS("grace_until", raw.GraceUntil, false)
	if err != nil {
		return LifecycleEvent{}, err
	}
	if !grace.IsZero() {
		ev.GraceUntil = &grace
	}
	return ev, nil
}
