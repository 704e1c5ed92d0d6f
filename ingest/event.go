package ingest

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/keywatch/keywatch/ingest/geo"
	"github.com/keywatch/keywatch/ingest/mapping"
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
	IP             netip.Addr  // the zero Addr when the gateway logged none
	Network        geo.Network // the IP's autonomous system and country, where known
	UserAgent      string
	Method         string
	Route          string
	RequestID      string
	Gateway        string
}

// Reasons a message is dead-lettered, stored in dead_letters.reason.
const (
	ReasonTooLarge     = "too_large"
	ReasonMissingField = "missing_field"
	ReasonInvalidUTF8  = mapping.ReasonInvalidUTF8
	ReasonInvalidJSON  = mapping.ReasonInvalidJSON
	ReasonWrongType    = mapping.ReasonWrongType
	ReasonInvalidValue = mapping.ReasonInvalidValue
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

// Limits bound an event's timestamp relative to the time it is read.
type Limits struct {
	// MaxAge rejects events older than this; 0 accepts any age back to the year 2000.
	MaxAge time.Duration
	// MaxSkew rejects events further in the future than this; 0 accepts any up to the year 2200.
	MaxSkew time.Duration
}

// Absolute limits on what a timestamp may be; anything outside cannot be an authentication event.
var (
	minTS = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTS = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// plausible reports whether t lies within the absolute limits.
func plausible(t time.Time) bool { return !t.Before(minTS) && t.Before(maxTS) }

func outsideBounds(field string, t time.Time) error {
	return decodeErr(ReasonInvalidValue, "%s: %s is outside %d–%d", field, t.Format(time.RFC3339), minTS.Year(), maxTS.Year())
}

// Decoder turns authentication messages into Events: it reads a gateway's log shape through a
// mapping, validates, replaces raw API keys by fingerprints and adds what geo knows of the IP.
// Since it knows where the mapping reads the raw key, it also makes the dead letters of the
// messages it refuses, with their secrets taken out. It is safe for concurrent use.
type Decoder struct {
	mapping *mapping.Mapping
	fp      *Fingerprinter
	limits  Limits
	geo     *geo.Lookup
	redact  *Redactor
}

// NewDecoder returns a Decoder; lookup may be nil (no enrichment).
func NewDecoder(m *mapping.Mapping, fp *Fingerprinter, limits Limits, lookup *geo.Lookup) *Decoder {
	return &Decoder{mapping: m, fp: fp, limits: limits, geo: lookup, redact: NewRedactor(m.SecretPaths())}
}

// DeadLetter returns what dead_letters keeps of msg, which could not be decoded because of err
// (not nil):
// the reason, the error and an excerpt, with every secret taken out of the last two (see
// Redactor), the raw key at the mapping's api_key path first of all, wherever it also stands.
// Topic, partition and offset are the caller's to fill in.
func (d *Decoder) DeadLetter(msg []byte, err error) DeadLetter {
	reason := ReasonInvalidValue
	var de *DecodeError
	if errors.As(err, &de) {
		reason = de.Reason
	}
	var known []string
	if k := d.mapping.RawKey(msg); k != "" {
		known = append(known, k)
	}
	return DeadLetter{
		Reason: reason, Error: d.redact.Text(err.Error(), known...), Excerpt: d.redact.Excerpt(msg, known...), Size: len(msg),
	}
}

// Event decodes one message read at now. A raw api_key is replaced by its fingerprint; when the
// event has no key_id, that fingerprint becomes the key id. Key and client ids must pass
// ValidateID; the free-text fields are cut to their bounds (user agent 512 bytes, route, request
// id and gateway 256, method 32) with control and bidi characters replaced by U+FFFD, the raw
// key taken out of them wherever it stands, and secret query parameters out of the route.
func (d *Decoder) Event(msg []byte, now time.Time) (Event, error) { return d.event(msg, now, nil) }

// event is Event, with the values of the fields that repeat from event to event shared through
// texts (see mapping.Mapping.ExtractShared), which may be nil.
func (d *Decoder) event(msg []byte, now time.Time, texts *mapping.Texts) (Event, error) {
	rec, err := d.mapping.ExtractShared(msg, texts)
	if err != nil {
		var me *mapping.Error
		if errors.As(err, &me) {
			return Event{}, &DecodeError{Reason: me.Reason, Detail: me.Detail}
		}
		return Event{}, decodeErr(ReasonInvalidJSON, "%v", err)
	}
	ev := Event{
		TS: rec.TS, KeyID: rec.KeyID, ClientID: rec.ClientID, UserAgent: rec.UserAgent, Method: rec.Method,
		Route: rec.Route, RequestID: rec.RequestID, Gateway: rec.Gateway,
	}
	key := rec.APIKey // the raw key: never stored, logged or quoted
	rec.APIKey = ""
	if key != "" {
		ev.KeyFingerprint = d.fp.Fingerprint(key)
		if ev.KeyID == "" {
			ev.KeyID = ev.KeyFingerprint
		}
	}
	if err := d.checkTS(ev.TS, now); err != nil {
		return Event{}, err
	}
	if ev.KeyID == "" {
		return Event{}, decodeErr(ReasonMissingField, "key_id: required unless api_key is given")
	}
	if err := validateIDs("key_id", ev.KeyID, "client_id", ev.ClientID); err != nil {
		return Event{}, err
	}
	if len(key) >= minKnownLen && (strings.Contains(rec.KeyID, key) || strings.Contains(ev.ClientID, key)) {
		return Event{}, decodeErr(ReasonInvalidValue, "key_id or client_id holds the raw api_key, which must never be stored; map them from elsewhere")
	}
	ev.UserAgent = d.freeText(ev.UserAgent, key, maxUserAgentLen)
	ev.Method = d.freeText(ev.Method, key, maxMethodLen)
	ev.Route = d.freeText(d.redact.redactPairs(ev.Route), key, maxRouteLen)
	ev.RequestID = d.freeText(ev.RequestID, key, maxRequestIDLen)
	ev.Gateway = d.freeText(ev.Gateway, key, maxGatewayLen)
	if rec.Status != 0 {
		if rec.Status < 100 || rec.Status > 599 {
			return Event{}, decodeErr(ReasonInvalidValue, "status: %d is not an HTTP status", rec.Status)
		}
		ev.Status = uint16(rec.Status)
	}
	switch {
	case rec.Outcome != "":
		ev.Outcome = Outcome(rec.Outcome)
		if !outcomes[ev.Outcome] {
			return Event{}, decodeErr(ReasonInvalidValue, "outcome: %q is not one of ok, invalid_key, expired_key, revoked_key, forbidden, rate_limited, error", truncate(rec.Outcome, 40))
		}
	case rec.Status != 0:
		ev.Outcome = OutcomeFromStatus(rec.Status)
	default:
		return Event{}, decodeErr(ReasonMissingField, "outcome: required when status is absent")
	}
	if rec.IP != "" {
		if ev.IP, err = netip.ParseAddr(rec.IP); err != nil {
			return Event{}, decodeErr(ReasonInvalidValue, "ip: %q is not an IP address", truncate(rec.IP, 60))
		}
		ev.Network = d.geo.Network(ev.IP)
	}
	return ev, nil
}

// freeText is s, a free-text field of an event that carried the raw key key (or none: ""),
// ready to store: the key taken out, cut to max bytes, control and bidi characters replaced.
func (d *Decoder) freeText(s, key string, max int) string {
	if len(key) >= minKnownLen && strings.Contains(s, key) {
		s = strings.ReplaceAll(s, key, redacted)
	}
	return cleanText(s, max)
}

func (d *Decoder) checkTS(ts, now time.Time) error {
	switch {
	case ts.IsZero():
		return decodeErr(ReasonMissingField, "ts: required")
	case !plausible(ts):
		return outsideBounds("ts", ts)
	case d.limits.MaxAge > 0 && ts.Before(now.Add(-d.limits.MaxAge)):
		return decodeErr(ReasonInvalidValue, "ts: %s is more than %s old (ingest.max_event_age)", ts.Format(time.RFC3339), d.limits.MaxAge)
	case d.limits.MaxSkew > 0 && ts.After(now.Add(d.limits.MaxSkew)):
		return decodeErr(ReasonInvalidValue, "ts: %s is more than %s in the future (ingest.max_event_skew)", ts.Format(time.RFC3339), d.limits.MaxSkew)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
