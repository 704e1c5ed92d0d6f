package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
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

// Lifecycle events are few: they are read with encoding/json rather than a mapping.

// unmarshalStrict decodes JSON into v and maps failures to dead-letter reasons.
func unmarshalStrict(msg []byte, v any) error {
	if !utf8.Valid(msg) {
		return decodeErr(ReasonInvalidUTF8, "message is not valid UTF-8")
	}
	if err := json.Unmarshal(msg, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return decodeErr(ReasonWrongType, "%s: got JSON %s, want %s", typeErr.Field, typeErr.Value, jsonKind(typeErr.Type.String()))
		}
		return decodeErr(ReasonInvalidJSON, "%v", err)
	}
	return nil
}

func jsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "int"):
		return "number"
	case strings.Contains(goType, "string"):
		return "string"
	default:
		return "object"
	}
}

// parseTS reads an RFC 3339 string or a number of epoch milliseconds.
func parseTS(field string, raw json.RawMessage, required bool) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			return time.Time{}, decodeErr(ReasonMissingField, "%s: required", field)
		}
		return time.Time{}, nil
	}
	var t time.Time
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, decodeErr(ReasonInvalidJSON, "%s: %v", field, err)
		}
		var err error
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return time.Time{}, decodeErr(ReasonInvalidValue, "%s: %q is not RFC 3339", field, truncate(s, 40))
		}
	default:
		var ms json.Number
		if err := json.Unmarshal(raw, &ms); err != nil {
			return time.Time{}, decodeErr(ReasonWrongType, "%s: want an RFC 3339 string or epoch milliseconds", field)
		}
		f, err := ms.Float64()
		if err != nil {
			return time.Time{}, decodeErr(ReasonInvalidValue, "%s: %s is not epoch milliseconds", field, truncate(ms.String(), 40))
		}
		t = time.UnixMilli(int64(f)).Add(time.Duration((f - float64(int64(f))) * float64(time.Millisecond)))
	}
	t = t.UTC()
	if !plausible(t) {
		return time.Time{}, outsideBounds(field, t)
	}
	return t, nil
}
