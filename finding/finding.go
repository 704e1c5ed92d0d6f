// Package finding owns the model every detector reports in and every consumer reads: a finding
// (identity, severity, score, summary), its labels and display fields, the record of a detector run,
// and the findings and detector_runs tables. A finding is labels and annotations, as an alert is in
// Prometheus and vmalert: the detector that knows what it found fills the labels (what selectors
// match and actions read, e.g. a spike's rotation step) and the fields (what a human reads, in
// order), so that alerting, notify and action never decode a detector's private evidence, which is
// kept beside them for the record. It does not detect (package detect) nor alert (package alerting).
package finding

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

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
	return 0, fmt.Errorf("%q is not a severity (info, warning, critical)", s)
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
	// Labels are what the finding is about beyond its identity: what selectors (routes, silences,
	// policies) match and actions read, e.g. LabelStep. Set carries them with the identity labels.
	Labels map[string]string `json:"labels,omitempty"`
	// Fields are the evidence in words, in the order a human reads them: what notifications show.
	Fields Fields `json:"fields,omitempty"`
	// Evidence is the detector's own record of what it saw, stored as JSON for the record and the
	// dashboards; consumers read Labels and Fields instead.
	Evidence any `json:"evidence"`
}

// Field is one line of a finding's evidence as a human reads it: "Seen from", "3 countries". Name
// is the detector's own words; Value is plain text with the values in it as they came (a user agent,
// a route), unescaped: whoever shows it escapes it (notify does, word by word). Times in a value
// are written by Stamp.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// The identity labels every finding has (Set), and the common ones detectors add.
const (
	LabelDetector   = "detector"
	LabelSeverity   = "severity"
	LabelKeyID      = "key_id"
	LabelClientID   = "client_id"
	LabelRotationID = "rotation_id"
	// LabelStep is the rotation step a finding follows: started, retired or revoked (spike).
	LabelStep = "step"
)

// Set is every label of the finding: its identity (detector, severity, key_id, client_id,
// rotation_id) and Labels.
func (f Finding) Set() map[string]string {
	return LabelsOf(f.Detector, f.Severity, f.KeyID, f.ClientID, f.RotationID, f.Labels)
}

// LabelsOf is every label of a finding, or of the alert that follows it: the identity given and
// the labels its detector added (which never override the identity).
func LabelsOf(detector string, severity Severity, keyID, clientID, rotationID string, labels map[string]string) map[string]string {
	s := make(map[string]string, len(labels)+5)
	for k, v := range labels {
		s[k] = v
	}
	s[LabelDetector], s[LabelSeverity], s[LabelKeyID] = detector, severity.String(), keyID
	s[LabelClientID], s[LabelRotationID] = clientID, rotationID
	return s
}

// Fields are display fields, in the order a human reads them.
type Fields []Field

// Add appends a display field; an empty value is left out.
func (fs *Fields) Add(name, value string) {
	if value != "" {
		*fs = append(*fs, Field{Name: name, Value: value})
	}
}

// fieldTime is how display fields write a time: "2006-01-02 15:04 UTC".
const fieldTime = "2006-01-02 15:04 UTC"

// Stamp writes t as display fields do (fieldTime, in UTC); the zero time as nothing.
func Stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(fieldTime)
}

// Run is one detector run: when, what it found, or why it failed.
type Run struct {
	ID                string
	Detector          string
	Started, Finished time.Time
	Findings          []Finding
	Err               error
}

// Fingerprint identifies a finding across runs: the same detector, key, client and rotation give
// the same fingerprint, so alerting can follow it from pending to resolved.
func Fingerprint(detector, keyID, clientID, rotationID string) string {
	h := sha256.Sum256([]byte(strings.Join([]string{detector, keyID, clientID, rotationID}, "\x00")))
	return hex.EncodeToString(h[:12])
}

// New returns a finding of detector about a key, client and rotation, detected at now.
func New(detector string, now time.Time, keyID, clientID, rotationID string) Finding {
	return Finding{
		Detector: detector, KeyID: keyID, ClientID: clientID, RotationID: rotationID, DetectedAt: now,
		Fingerprint: Fingerprint(detector, keyID, clientID, rotationID),
	}
}

// EvidenceJSON is the evidence as stored.
func (f Finding) EvidenceJSON() (string, error) {
	b, err := json.Marshal(f.Evidence)
	if err != nil {
		return "", fmt.Errorf("encode the evidence of %s finding %s: %w", f.Detector, f.Fingerprint, err)
	}
	return string(b), nil
}

// JSON is the display fields as stored; none as "".
func (fs Fields) JSON() string {
	if len(fs) == 0 {
		return ""
	}
	b, _ := json.Marshal(fs) // strings only: cannot fail
	return string(b)
}

// ParseFields reads display fields as stored; empty gives none.
func ParseFields(s string) (Fields, error) {
	if s == "" {
		return nil, nil
	}
	var fs Fields
	if err := json.Unmarshal([]byte(s), &fs); err != nil {
		return nil, fmt.Errorf("decode stored display fields %.60q: %w", s, err)
	}
	return fs, nil
}
