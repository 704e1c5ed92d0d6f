package leakreport

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
)

// Detector is the detector name of the findings this package stores.
const Detector = "leak_report"

// Score of a leak report finding: above any revoke threshold, since a leaked secret is public.
const Score = 1000

// MaxBody is the largest report body read.
const MaxBody = 1 << 20

// Reporters: who sent a report, as stored in a finding's evidence.
const (
	ReporterGitHub = "github"
	ReporterBearer = "bearer"
)

// Request headers of GitHub's secret scanning partner program.
const (
	headerKeyID     = "Github-Public-Key-Identifier"
	headerSignature = "Github-Public-Key-Signature"
)

// Refusals is told of every report refused for a missing or bad signature or token
// (refusal.Log): it counts and logs them; nothing is stored.
type Refusals interface {
	Refuse(r *http.Request, source, reason string)
}

// Handler serves POST /v1/leaks.
type Handler struct {
	conn    driver.Conn
	store   *finding.Store
	fp      *ingest.Fingerprinter
	token   string
	keys    *keyRing // by Github-Public-Key-Identifier
	refuse  Refusals
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
	// storeMu makes "is this report's run stored yet?" and storing it one step within this process.
	storeMu sync.Mutex
	// lookupFor bounds how long an unreachable ClickHouse is retried within one request.
	lookupFor time.Duration
}

// New returns the handler for cfg, with the public keys of cfg.GitHubKeys loaded. fingerprintKey
// must be the key ingest fingerprints raw API keys with (cfg.Fingerprint.Key). refusals, metrics
// and log may be nil.
func New(conn driver.Conn, cfg config.LeakReports, fingerprintKey string, refusals Refusals, metrics *Metrics, log *slog.Logger) (*Handler, error) {
	if len(cfg.GitHubKeyIDs) != len(cfg.GitHubKeys) {
		return nil, fmt.Errorf("leakreport: %d key ids in leak_reports.github_key_ids for %d files in leak_reports.github_keys; give one id per file", len(cfg.GitHubKeyIDs), len(cfg.GitHubKeys))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		conn: conn, store: finding.NewStore(conn), fp: ingest.NewFingerprinter([]byte(fingerprintKey)),
		token: cfg.Token, refuse: refusals, metrics: metrics, log: log, now: time.Now, lookupFor: 10 * time.Second,
		keys: &keyRing{
			static: map[string]*ecdsa.PublicKey{}, url: cfg.GitHubKeysURL, client: &http.Client{Timeout: keysTimeout},
			metrics: metrics, log: log, now: time.Now,
		},
	}
	for i, path := range cfg.GitHubKeys {
		id := strings.TrimSpace(cfg.GitHubKeyIDs[i])
		if id == "" {
			return nil, fmt.Errorf("leakreport: leak_reports.github_key_ids[%d], the id of %s, is empty", i, path)
		}
		if _, dup := h.keys.static[id]; dup {
			return nil, fmt.Errorf("leakreport: key id %s of %s is given twice in leak_reports.github_key_ids", id, path)
		}
		key, err := loadPublicKey(path)
		if err != nil {
			return nil, err
		}
		h.keys.static[id] = key
	}
	return h, nil
}

// loadPublicKey reads an ECDSA P-256 public key from a PEM file ("PUBLIC KEY", PKIX).
func loadPublicKey(path string) (*ecdsa.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("leakreport: read GitHub public key: %w", err)
	}
	key, err := parsePublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("leakreport: GitHub public key file %s: %w", path, err)
	}
	return key, nil
}

// report is one reported secret. Token is the raw secret: it is fingerprinted and hashed, never
// stored, logged or echoed.
type report struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// Label is the answer for one reported secret, in the shape GitHub takes as false-positive
// feedback: the SHA-256 of the token in hex, never the token itself.
type Label struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	// Label is "true_positive" (the secret is a key keywatch has seen in traffic) or
	// "false_positive" (it is not); GitHub accepts only these two.
	Label string `json:"label"`
}

const (
	labelTrue  = "true_positive"
	labelFalse = "false_positive"
)

// Evidence is what a leak_report finding stores besides its key and client.
type Evidence struct {
	URL            string    `json:"url"`
	Source         string    `json:"source,omitempty"`
	Type           string    `json:"type,omitempty"`
	ReportedAt     time.Time `json:"reported_at"`
	Reporter       string    `json:"reporter"`
	KeyFingerprint string    `json:"key_fingerprint"`
	KeyLastSeen    time.Time `json:"key_last_seen"`
	// OtherURLs are further places the same report named for the same key.
	OtherURLs []string `json:"other_urls,omitempty"`
}

// fields says the evidence in words, as notifications show it: plain text, the reported URLs
// as text (an output must not make them links: a reporter chose them).
func (e *Evidence) fields() finding.Fields {
	var fs finding.Fields
	fs.Add("URL", e.URL)
	fs.Add("Other URLs", strings.Join(e.OtherURLs, "\n"))
	fs.Add("Source", e.Source)
	fs.Add("Type", e.Type)
	fs.Add("Reporter", e.Reporter)
	fs.Add("Reported at", finding.Stamp(e.ReportedAt))
	fs.Add("Key fingerprint", e.KeyFingerprint)
	fs.Add("Key last seen", finding.Stamp(e.KeyLastSeen))
	return fs
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		api.WriteError(w, http.StatusMethodNotAllowed, "POST a report")
		return
	}
	ctx := r.Context()
	if h.token == "" && !h.keys.on() {
		h.rejected(r, "leak reports are off")
		api.WriteError(w, http.StatusForbidden, "leak reports are off: configure leak_reports.github_keys_url, leak_reports.github_keys or KEYWATCH_LEAK_REPORTS_TOKEN")
		return
	}
	// The headers are checked before the body is read: a request that cannot be a report costs
	// nothing more. A GitHub signature covers the body, so it is verified once the body is in.
	reporter, key, sig, reason := h.authenticate(r)
	if reason != "" {
		h.rejected(r, reason)
		api.WriteError(w, http.StatusUnauthorized, reason)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			api.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("report body over %d bytes", MaxBody))
			return
		}
		api.WriteError(w, http.StatusBadRequest, "read report body: "+err.Error())
		return
	}
	if key != nil {
		digest := sha256.Sum256(body)
		if !ecdsa.VerifyASN1(key, digest[:], sig) {
			h.rejected(r, "bad signature")
			api.WriteError(w, http.StatusUnauthorized, "bad signature")
			return
		}
	}
	reports, err := parse(body)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	labels, err := h.handle(ctx, reporter, reports)
	if err != nil {
		h.log.Error("leak report not handled", "reporter", reporter, "reports", len(reports), "err", err)
		api.WriteError(w, http.StatusServiceUnavailable, "the report could not be matched or stored; send it again")
		return
	}
	api.WriteJSON(w, http.StatusOK, labels)
}

// authenticate checks a request's headers: the GitHub key identifier and the form of its
// signature when either GitHub header is present (key and sig are then what the body must verify
// against), else the bearer token. It returns the reporter, or why the request is refused (a
// constant, since it is a metric label).
func (h *Handler) authenticate(r *http.Request) (reporter string, key *ecdsa.PublicKey, sig []byte, reason string) {
	keyID, sig64 := r.Header.Get(headerKeyID), r.Header.Get(headerSignature)
	if keyID != "" || sig64 != "" {
		switch {
		case keyID == "":
			return "", nil, nil, "missing " + headerKeyID + " header"
		case sig64 == "":
			return "", nil, nil, "missing " + headerSignature + " header"
		}
		key, ok := h.keys.lookup(r.Context(), keyID)
		if !ok {
			return "", nil, nil, "unknown GitHub public key identifier"
		}
		der, err := base64.StdEncoding.DecodeString(sig64)
		if err != nil {
			return "", nil, nil, "signature is not base64"
		}
		return ReporterGitHub, key, der, ""
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "", nil, nil, "missing signature or bearer token"
	}
	if h.token == "" {
		return "", nil, nil, "no bearer token configured for leak reports"
	}
	scheme, got, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(h.token)) != 1 {
		return "", nil, nil, "wrong bearer token"
	}
	return ReporterBearer, nil, nil, ""
}

// rejected counts a refused report; nothing is stored and nothing is waited for.
func (h *Handler) rejected(r *http.Request, reason string) {
	h.metrics.add(resultRejected, 1)
	if h.refuse != nil {
		h.refuse.Refuse(r, "leak_reports", reason)
	}
}

// parse reads a JSON array of reports, or a single report object.
func parse(body []byte) ([]report, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errors.New("empty body: want a JSON array of {token, type, url, source}")
	}
	var reports []report
	if trimmed[0] == '{' {
		var one report
		if err := json.Unmarshal(trimmed, &one); err != nil {
			return nil, fmt.Errorf("report is not a JSON object of {token, type, url, source}: %v", err)
		}
		reports = []report{one}
	} else if err := json.Unmarshal(trimmed, &reports); err != nil {
		return nil, fmt.Errorf("body is not a JSON array of {token, type, url, source}: %v", err)
	}
	if len(reports) == 0 {
		return nil, errors.New("no reports in the body")
	}
	for i, rep := range reports {
		if rep.Token == "" {
			return nil, fmt.Errorf("report %d has no token", i)
		}
	}
	return reports, nil
}

// known is what key_fingerprints knows of one fingerprint.
type known struct {
	keyID, clientID string
	lastSeen        time.Time
}

// handle matches reports to keys, stores one finding per matched key and answers per report.
func (h *Handler) handle(ctx context.Context, reporter string, reports []report) ([]Label, error) {
	now := h.now().UTC()
	fps := make([]string, len(reports))
	for i, rep := range reports {
		fps[i] = h.fp.Fingerprint(rep.Token)
	}
	keys, err := h.lookup(ctx, fps)
	if err != nil {
		return nil, err
	}
	labels := make([]Label, len(reports))
	var findings []finding.Finding
	byFingerprint := map[string]int{} // finding fingerprint -> index in findings
	var runKey []string
	matched, unknown := 0, 0
	for i, rep := range reports {
		sum := sha256.Sum256([]byte(rep.Token))
		labels[i] = Label{TokenHash: hex.EncodeToString(sum[:]), TokenType: rep.Type, Label: labelFalse}
		k, ok := keys[fps[i]]
		if !ok {
			unknown++
			h.log.Info("leak report of an unknown secret", "reporter", reporter, "fingerprint", fps[i], "type", rep.Type, "url", rep.URL, "source", rep.Source)
			continue
		}
		matched++
		labels[i].Label = labelTrue
		runKey = append(runKey, strings.Join([]string{fps[i], rep.URL, rep.Source, rep.Type}, "\x00"))
		fingerprint := finding.Fingerprint(Detector, k.keyID, k.clientID, "")
		if j, dup := byFingerprint[fingerprint]; dup {
			ev := findings[j].Evidence.(*Evidence)
			if rep.URL != ev.URL && !slices.Contains(ev.OtherURLs, rep.URL) {
				ev.OtherURLs = append(ev.OtherURLs, rep.URL)
			}
			continue
		}
		byFingerprint[fingerprint] = len(findings)
		findings = append(findings, finding.Finding{
			Detector: Detector, Fingerprint: fingerprint, Severity: finding.Critical, Score: Score,
			KeyID: k.keyID, ClientID: k.clientID, Summary: summary(k.keyID, rep), DetectedAt: now,
			Evidence: &Evidence{URL: rep.URL, Source: rep.Source, Type: rep.Type, ReportedAt: now,
				Reporter: reporter, KeyFingerprint: fps[i], KeyLastSeen: k.lastSeen},
		})
		h.log.Warn("leak report of a known key", "reporter", reporter, "key_id", k.keyID, "client_id", k.clientID,
			"fingerprint", fps[i], "type", rep.Type, "url", rep.URL, "source", rep.Source)
	}
	for i := range findings {
		findings[i].Fields = findings[i].Evidence.(*Evidence).fields()
	}
	if len(findings) > 0 {
		if err := h.storeOnce(ctx, runID(runKey), now, findings); err != nil {
			return nil, err
		}
	}
	h.metrics.add(resultMatched, matched)
	h.metrics.add(resultUnknown, unknown)
	return labels, nil
}

func summary(keyID string, rep report) string {
	if rep.URL == "" {
		return fmt.Sprintf("key %s reported leaked (source %s, no URL given)", keyID, cmp.Or(rep.Source, "unknown"))
	}
	return fmt.Sprintf("key %s reported leaked at %s", keyID, rep.URL)
}

// runID is derived from what was reported (fingerprint, URL, source, type of each matched secret,
// in any order), so that a retried report, or the same leak reported again, is stored once.
func runID(parts []string) string {
	slices.Sort(parts)
	parts = slices.Compact(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x01")))
	return Detector + "-" + hex.EncodeToString(sum[:12])
}

// lookup returns the key of each fingerprint keywatch has seen in traffic.
func (h *Handler) lookup(ctx context.Context, fps []string) (map[string]known, error) {
	uniq := slices.Compact(slices.Sorted(slices.Values(fps)))
	out := map[string]known{}
	err := schema.Retry(ctx, h.lookupFor, func(ctx context.Context) error {
		keys, err := ingest.KeysOfFingerprints(ctx, h.conn, uniq)
		if err != nil {
			return err
		}
		clear(out)
		for fp, k := range keys {
			out[fp] = known{keyID: k.KeyID, clientID: k.ClientID, lastSeen: k.LastSeen}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("leakreport: look up %d reported fingerprints: %w", len(uniq), err)
	}
	return out, nil
}

// storeOnce stores the run unless a run of the same id is stored already.
func (h *Handler) storeOnce(ctx context.Context, id string, now time.Time, findings []finding.Finding) error {
	h.storeMu.Lock()
	defer h.storeMu.Unlock()
	var n uint64
	if err := schema.Retry(ctx, h.lookupFor, func(ctx context.Context) (err error) {
		n, err = h.store.RunFindings(ctx, Detector, id)
		return err
	}); err != nil {
		return fmt.Errorf("leakreport: check whether report %s is stored: %w", id, err)
	}
	if n > 0 {
		h.log.Info("leak report stored before; not stored again", "run_id", id)
		return nil
	}
	return h.store.StoreRun(ctx, finding.Run{ID: id, Detector: Detector, Started: now, Finished: now, Findings: findings})
}
