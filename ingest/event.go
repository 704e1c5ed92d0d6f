package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// Outcome is the result of one authentication attempt as stored in auth_events.outcome.
type Outcome string

// The outcomes of contract 3.1.
const (
	OutcomeOK          Outcome = "ok"
	OutcomeInvalidKey  Outcome = "invalid_key"
	OutcomeExpiredKey  Outcome = "expired_key"
	OutcomeRevokedKey  Outcome = "revoked_key"
	OutcomeForbidden   Outcome = "forbidden"
	OutcomeRateLimited Outcome = "rate_limited"
	OutcomeError       Outcome = "error"
)

var outcomes = map[Outcome]bool{
	OutcomeOK: true, OutcomeInvalidKey: true, OutcomeExpiredKey: true, OutcomeRevokedKey: true,
	OutcomeForbidden: true, OutcomeRateLimited: true, OutcomeError: true,
}

// OutcomeFromStatus derives an outcome from an HTTP status when the gateway logged none: 401 is an
// invalid key, 403 forbidden, 429 rate limited, 5xx an error; any other status means the key was
// accepted (a 404 or 400 from the upstream is still a successful authentication).
func OutcomeFromStatus(status int) Outcome {
	switch {
	case status == 401:
		return OutcomeInvalidKey
	case status == 403:
		return OutcomeForbidden
	case status == 429:
		return OutcomeRateLimited
	case status >= 500:
		return OutcomeError
	default:
		return OutcomeOK
	}
}

// Event is one authentication attempt, validated and ready to store. It never holds a raw API key.
type Event struct {
	TS             time.Time
	KeyID          string
	KeyFingerprint string // keyed fingerprint of the raw API key the event carried, if any
	ClientID       string
	Outcome        Outcome
	Status         uint16
	IP             netip.Addr // the zero Addr when the gateway logged none
	UserAgent      string
	Method         string
	Route          string
	RequestID      string
	Gateway        string
}

// Reasons a message is dead-lettered, stored in dead_letters.reason.
const (
	ReasonTooLarge     = "too_large"
	ReasonInvalidUTF8  = "invalid_utf8"
	ReasonInvalidJSON  = "invalid_json"
	ReasonWrongType    = "wrong_type"
	ReasonMissingField = "missing_field"
	ReasonInvalidValue = "invalid_value"
)

// DecodeError says why a message cannot become an event.
type DecodeError struct {
	Reason string // one of the Reason constants
	Detail string // for a human; never contains a raw API key
}

func (e *DecodeError) Error() string { return e.Reason + ": " + e.Detail }

func decodeErr(reason, format string, args ...any) *DecodeError {
	return &DecodeError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// rawEvent is contract 3.1 as JSON.
type rawEvent struct {
	TS        json.RawMessage `json:"ts"`
	KeyID     string          `json:"key_id"`
	APIKey    string          `json:"api_key"`
	ClientID  string          `json:"client_id"`
	Outcome   string          `json:"outcome"`
	Status    *int            `json:"status"`
	IP        string          `json:"ip"`
	UserAgent string          `json:"user_agent"`
	Method    string          `json:"method"`
	Route     string          `json:"route"`
	RequestID string          `json:"request_id"`
	Gateway   string          `json:"gateway"`
}

// Limits on what a timestamp may be; anything outside cannot be an authentication event.
var (
	minTS = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTS = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// DecodeEvent turns one message into an Event. A raw api_key is replaced by its fingerprint
// under fp; when the event has no key_id, that fingerprint becomes the key id.
func DecodeEvent(msg []byte, fp *Fingerprinter) (Event, error) {
	var raw rawEvent
	if err := unmarshalStrict(msg, &raw); err != nil {
		return Event{}, err
	}
	ev := Event{
		ClientID: raw.ClientID, UserAgent: raw.UserAgent, Method: raw.Method, Route: raw.Route,
		RequestID: raw.RequestID, Gateway: raw.Gateway, KeyID: raw.KeyID,
	}
	var err error
	if ev.TS, err = parseTS("ts", raw.TS, true); err != nil {
		return Event{}, err
	}
	if raw.APIKey != "" {
		ev.KeyFingerprint = fp.Fingerprint(raw.APIKey)
		raw.APIKey = ""
		if ev.KeyID == "" {
			ev.KeyID = ev.KeyFingerprint
		}
	}
	if ev.KeyID == "" {
		return Event{}, decodeErr(ReasonMissingField, "key_id: required unless api_key is given")
	}
	if raw.Status != nil {
		if *raw.Status < 100 || *raw.Status > 599 {
			return Event{}, decodeErr(ReasonInvalidValue, "status: %d is not an HTTP status", *raw.Status)
		}
		ev.Status = uint16(*raw.Status)
	}
	switch {
	case raw.Outcome != "":
		ev.Outcome = Outcome(raw.Outcome)
		if !outcomes[ev.Outcome] {
			return Event{}, decodeErr(ReasonInvalidValue, "outcome: %q is not one of ok, invalid_key, expired_key, revoked_key, forbidden, rate_limited, error", truncate(raw.Outcome, 40))
		}
	case raw.Status != nil:
		ev.Outcome = OutcomeFromStatus(*raw.Status)
	default:
		return Event{}, decodeErr(ReasonMissingField, "outcome: required when status is absent")
	}
	if raw.IP != "" {
		if ev.IP, err = netip.ParseAddr(raw.IP); err != nil {
			return Event{}, decodeErr(ReasonInvalidValue, "ip: %q is not an IP address", truncate(raw.IP, 60))
		}
	}
	return ev, nil
}

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
	if t.Before(minTS) || !t.Before(maxTS) {
		return time.Time{}, decodeErr(ReasonInvalidValue, "%s: %s is outside %d–%d", field, t.Format(time.RFC3339), minTS.Year(), maxTS.Year())
	}
	return t, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
