package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrUnknownKey is returned for a key that neither lifecycle events nor stored traffic mention.
var ErrUnknownKey = errors.New("unknown key: no lifecycle events and no stored traffic")

// Severity ranks findings; higher is more urgent.
type Severity int8

// The severities, as stored (findings.severity).
const (
	Info     Severity = 1
	Warning  Severity = 2
	Critical Severity = 3
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return fmt.Sprintf("severity(%d)", int8(s))
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// ParseSeverity reads a severity's name.
func ParseSeverity(s string) (Severity, error) {
	for _, v := range []Severity{Info, Warning, Critical} {
		if v.String() == s {
			return v, nil
		}
	}
	return 0, fmt.Errorf("detect: %q is not a severity (info, warning, critical)", s)
}

// Finding is one detector's result for one key, client and rotation.
type Finding struct {
	Detector    string    `json:"detector"`
	Fingerprint string    `json:"fingerprint"`
	Severity    Severity  `json:"severity"`
	Score       float64   `json:"score"`
	KeyID       string    `json:"key_id"`
	ClientID    string    `json:"client_id,omitempty"`
	RotationID  string    `json:"rotation_id,omitempty"`
	Summary     string    `json:"summary"`
	DetectedAt  time.Time `json:"detected_at"`
	// Evidence is what a human needs to act, detector-specific; stored as JSON.
	Evidence any `json:"evidence"`
}

// Fingerprint identifies a finding across runs: the same detector, key, client and rotation give
// the same fingerprint, so alerting can follow it from pending to resolved.
func Fingerprint(detector, keyID, clientID, rotationID string) string {
	h := sha256.Sum256([]byte(strings.Join([]string{detector, keyID, clientID, rotationID}, "\x00")))
	return hex.EncodeToString(h[:12])
}

// newFinding fills in a finding's identity.
func newFinding(detector string, now time.Time, keyID, clientID, rotationID string) Finding {
	return Finding{
		Detector: detector, KeyID: keyID, ClientID: clientID, RotationID: rotationID, DetectedAt: now,
		Fingerprint: Fingerprint(detector, keyID, clientID, rotationID),
	}
}

func (f Finding) evidenceJSON() (string, error) {
	b, err := json.Marshal(f.Evidence)
	if err != nil {
		return "", fmt.Errorf("detect: evidence of %s finding %s: %w", f.Detector, f.Fingerprint, err)
	}
	return string(b), nil
}
