package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keywatch/keywatch/rotation"
)

type rawLifecycle struct {
	TS         json.RawMessage `json:"ts"`
	Type       string          `json:"type"`
	KeyID      string          `json:"key_id"`
	ClientID   string          `json:"client_id"`
	NewKeyID   string          `json:"new_key_id"`
	GraceUntil json.RawMessage `json:"grace_until"`
	Reason     string          `json:"reason"`
	Version    json.RawMessage `json:"version"`
	ExpiresAt  json.RawMessage `json:"expires_at"`
	Scopes     json.RawMessage `json:"scopes"`
}

// Limits of the key metadata a lifecycle event may carry.
const (
	maxVersionLen = 64
	maxScopes     = 100
	maxScopeLen   = 128
)

// DecodeLifecycle turns one message (contract 3.2) into the rotation model's lifecycle event,
// validated and ready to store: absent times are zero; Scopes is nil when the message did not
// say (or said []), else sorted and without duplicates. Its ids (key_id, client_id, new_key_id),
// version and scopes must pass ValidateID, and an error names the field; reason is cut to 512
// bytes, its control and bidi characters replaced by U+FFFD.
func DecodeLifecycle(msg []byte) (rotation.Event, error) {
	var raw rawLifecycle
	if err := unmarshalStrict(msg, &raw); err != nil {
		return rotation.Event{}, err
	}
	ev := rotation.Event{Type: raw.Type, KeyID: raw.KeyID, ClientID: raw.ClientID, NewKeyID: raw.NewKeyID, Reason: raw.Reason}
	var err error
	if ev.TS, err = parseTS("ts", raw.TS, true); err != nil {
		return rotation.Event{}, err
	}
	switch ev.Type {
	case rotation.KeyCreated, rotation.KeyRotationStarted, rotation.KeyRetired, rotation.KeyRevoked:
	case "":
		return rotation.Event{}, decodeErr(ReasonMissingField, "type: required")
	default:
		return rotation.Event{}, decodeErr(ReasonInvalidValue, "type: %q is not one of key.created, key.rotation_started, key.retired, key.revoked", truncate(raw.Type, 40))
	}
	if ev.KeyID == "" {
		return rotation.Event{}, decodeErr(ReasonMissingField, "key_id: required")
	}
	if ev.Type == rotation.KeyRotationStarted && ev.NewKeyID == "" {
		return rotation.Event{}, decodeErr(ReasonMissingField, "new_key_id: required with key.rotation_started")
	}
	if err := validateIDs("key_id", ev.KeyID, "client_id", ev.ClientID, "new_key_id", ev.NewKeyID); err != nil {
		return rotation.Event{}, err
	}
	ev.Reason = cleanText(ev.Reason, maxReasonLen)
	if ev.GraceUntil, err = parseTS("grace_until", raw.GraceUntil, false); err != nil {
		return rotation.Event{}, err
	}
	if ev.Version, err = parseVersion(raw.Version); err != nil {
		return rotation.Event{}, err
	}
	if ev.ExpiresAt, err = parseTS("expires_at", raw.ExpiresAt, false); err != nil {
		return rotation.Event{}, err
	}
	if ev.Scopes, err = parseScopes(raw.Scopes); err != nil {
		return rotation.Event{}, err
	}
	return ev, nil
}

// wholeNumber is a JSON number without fraction or exponent.
var wholeNumber = regexp.MustCompile(`^-?[0-9]+$`)

// parseVersion reads a key version given as a string ("2026-11", "v3") or a whole number (3),
// kept as its text.
func parseVersion(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	var v string
	switch kind := rawKind(raw); kind {
	case "", "null":
		return "", nil
	case "string":
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", decodeErr(ReasonInvalidJSON, "version: %v", err)
		}
	case "number":
		if v = string(raw); !wholeNumber.MatchString(v) {
			return "", decodeErr(ReasonInvalidValue, "version: %s is not a whole number (write other versions as a string)", truncate(v, 40))
		}
	default:
		return "", decodeErr(ReasonWrongType, "version: got JSON %s, want a string or a whole number", kind)
	}
	if len(v) > maxVersionLen {
		return "", decodeErr(ReasonInvalidValue, "version: %q is longer than %d bytes", truncate(v, 40), maxVersionLen)
	}
	if err := ValidateID("version", v); err != nil {
		return "", err
	}
	return v, nil
}

// parseScopes reads the scopes a key grants: an array of strings such as ["read", "trade"].
// Each scope is one word, as OAuth writes them; "read trade" in one string is refused rather than
// guessed at.
func parseScopes(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	switch kind := rawKind(raw); kind {
	case "", "null":
		return nil, nil
	case "array":
	default:
		return nil, decodeErr(ReasonWrongType, "scopes: got JSON %s, want an array of strings", kind)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, decodeErr(ReasonInvalidJSON, "scopes: %v", err)
	}
	if len(items) > maxScopes {
		return nil, decodeErr(ReasonInvalidValue, "scopes: %d of them, want at most %d", len(items), maxScopes)
	}
	var out []string
	for i, item := range items {
		if kind := rawKind(item); kind != "string" {
			return nil, decodeErr(ReasonWrongType, "scopes[%d]: got JSON %s, want a string", i, kind)
		}
		var s string
		if err := json.Unmarshal(item, &s); err != nil {
			return nil, decodeErr(ReasonInvalidJSON, "scopes[%d]: %v", i, err)
		}
		switch {
		case s == "":
			return nil, decodeErr(ReasonInvalidValue, "scopes[%d]: empty", i)
		case len(s) > maxScopeLen:
			return nil, decodeErr(ReasonInvalidValue, "scopes[%d]: %q is longer than %d bytes", i, truncate(s, 40), maxScopeLen)
		case strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == ',' }) >= 0:
			return nil, decodeErr(ReasonInvalidValue, "scopes[%d]: %q holds a space, comma or control character (give each scope as its own string)", i, truncate(s, 40))
		}
		if err := ValidateID(fmt.Sprintf("scopes[%d]", i), s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// rawKind names the JSON kind of an already valid value: "" when absent.
func rawKind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		return "string"
	case '[':
		return "array"
	case '{':
		return "object"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	default:
		return "number"
	}
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
