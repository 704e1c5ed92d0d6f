package leakreport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Bounds of fetching GitHub's public keys. The fetch is started by requests that anyone can send
// (a report naming an unknown key id), so it happens at most once per keysMinRefresh, takes at
// most keysTimeout, and reads at most keysMaxBody.
const (
	// keysMinRefresh keeps GitHub's unauthenticated API limit (60 requests an hour) far away.
	keysMinRefresh = 5 * time.Minute
	// keysMaxAge is how long fetched keys are used before they are fetched again: a key GitHub
	// withdraws stops being accepted within this time.
	keysMaxAge  = time.Hour
	keysTimeout = 10 * time.Second
	keysMaxBody = 256 << 10
)

// keyRing is the public keys reports are verified with: the static PEM files of the
// configuration, and the keys GitHub publishes at its meta endpoint
// (leak_reports.github_keys_url), fetched when first needed, again when a report names a key id
// not among them, and again once they are keysMaxAge old. A failed fetch keeps the keys of the
// last one; the static files are used whatever the endpoint answers (the offline fallback).
type keyRing struct {
	static  map[string]*ecdsa.PublicKey
	url     string // "": no fetching
	client  *http.Client
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time

	mu          sync.Mutex // one fetch at a time; guards what follows
	fetched     map[string]*ecdsa.PublicKey
	fetchedAt   time.Time // of the last successful fetch
	attemptedAt time.Time // of the last fetch, successful or not
}

// on says whether any key could verify a report.
func (k *keyRing) on() bool { return len(k.static) > 0 || k.url != "" }

// lookup returns the key of id, fetching the published keys first when id is not among them or
// they are old (at most once per keysMinRefresh).
func (k *keyRing) lookup(ctx context.Context, id string) (*ecdsa.PublicKey, bool) {
	if key, ok := k.static[id]; ok {
		return key, true
	}
	if k.url == "" {
		return nil, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	key, ok := k.fetched[id]
	if (!ok || now.Sub(k.fetchedAt) >= keysMaxAge) && now.Sub(k.attemptedAt) >= keysMinRefresh {
		k.attemptedAt = now
		keys, err := k.fetch(ctx)
		if err != nil {
			k.metrics.keyFetch(resultFailed)
			k.log.Warn("fetching GitHub's secret scanning public keys failed; the keys fetched before and the static files stay in use",
				"url", k.url, "retry_after", keysMinRefresh, "err", err)
		} else {
			k.metrics.keyFetch(resultFetched)
			k.fetched, k.fetchedAt = keys, now
			k.log.Info("fetched GitHub's secret scanning public keys", "url", k.url, "keys", len(keys))
		}
		key, ok = k.fetched[id]
	}
	return key, ok
}

// publishedKeys is the answer of GitHub's meta endpoint
// (GET /meta/public_keys/secret_scanning).
type publishedKeys struct {
	PublicKeys []struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
	} `json:"public_keys"`
}

// fetch reads the published keys. Every key must parse: an answer with a broken key is refused
// whole rather than half used.
func (k *keyRing) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keysTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("User-Agent", "keywatch")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, keysMaxBody+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("read the answer: %w", err)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	case len(body) > keysMaxBody:
		return nil, fmt.Errorf("answer larger than %d bytes", keysMaxBody)
	}
	var pk publishedKeys
	if err := json.Unmarshal(body, &pk); err != nil {
		return nil, fmt.Errorf("decode the answer: %w", err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for i, p := range pk.PublicKeys {
		if p.KeyIdentifier == "" {
			return nil, fmt.Errorf("public_keys[%d] has no key_identifier", i)
		}
		key, err := parsePublicKey([]byte(p.Key))
		if err != nil {
			return nil, fmt.Errorf("public_keys[%d] (%s): %w", i, p.KeyIdentifier, err)
		}
		keys[p.KeyIdentifier] = key
	}
	if len(keys) == 0 {
		return nil, errors.New("the answer lists no public keys")
	}
	return keys, nil
}

// parsePublicKey reads an ECDSA P-256 public key in PEM ("PUBLIC KEY", PKIX).
func parsePublicKey(raw []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, errors.New("holds no PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := pub.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("want an ECDSA P-256 public key, got %T", pub)
	}
	return key, nil
}
