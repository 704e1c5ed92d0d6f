package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// FingerprintPrefix starts every key id that keywatch derived from a raw API key.
const FingerprintPrefix = "fp_"

// Fingerprinter turns raw API keys into keyed fingerprints: HMAC-SHA256 under a secret, so the
// same key always maps to the same id while the id reveals nothing without the secret.
type Fingerprinter struct {
	pool sync.Pool
}

// NewFingerprinter returns a Fingerprinter keyed with secret.
func NewFingerprinter(secret []byte) *Fingerprinter {
	key := append([]byte(nil), secret...)
	return &Fingerprinter{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// Fingerprint returns "fp_" and the first 128 bits of HMAC-SHA256(secret, apiKey) in hex.
func (f *Fingerprinter) Fingerprint(apiKey string) string {
	h := f.pool.Get().(hash.Hash)
	defer f.pool.Put(h)
	h.Reset()
	h.Write([]byte(apiKey))
	var sum [sha256.Size]byte
	return FingerprintPrefix + hex.EncodeToString(h.Sum(sum[:0])[:16])
}
