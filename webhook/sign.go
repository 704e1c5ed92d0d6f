package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DecodeSecret returns the key of a Standard Webhooks secret "whsec_<base64>".
func DecodeSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New("the webhook secret must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("the webhook secret is not base64 after whsec_: %w", err)
	}
	return key, nil
}

// Sign returns the Standard Webhooks webhook-signature header value of one message.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.", id, ts.Unix())
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// maxExcerpt bounds what is read of an endpoint's answer.
const maxExcerpt = 512

// Answer is an endpoint's answer to one attempt (Post): its status, its Retry-After (0 when
// absent or past) and the start of its body.
type Answer struct {
	Status     int
	RetryAfter time.Duration
	Excerpt    string
}

// Post makes one attempt at message id: it POSTs body to url, signed with key at now, and returns
// the endpoint's answer. The error is the client's (the caller bounds the attempt with ctx).
func Post(ctx context.Context, client *http.Client, url string, key []byte, id string, now time.Time, body []byte) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	setHeaders(req.Header, key, id, now, body)
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxExcerpt))
	return Answer{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), now), Excerpt: strings.TrimSpace(string(b))}, nil
}

// setHeaders sets the headers of one signed attempt of a message: its webhook-id, a
// webhook-timestamp of ts and the signature of both with the body.
func setHeaders(h http.Header, key []byte, id string, ts time.Time, body []byte) {
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "keywatch")
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", Sign(key, id, ts, body))
}

// Verify is a receiver's side of Sign: secret is the Standard Webhooks secret (whsec_...), the
// timestamp must be within tolerance of now, and one of the space-separated signatures must be a
// matching v1 signature (compared in constant time).
func Verify(secret, id, ts, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := DecodeSecret(secret)
	if err != nil {
		return err
	}
	if id == "" || ts == "" || signatures == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not unix seconds", ts)
	}
	at := time.Unix(sec, 0)
	if d := now.Sub(at); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp is %s away from now", d.Round(time.Second))
	}
	want := Sign(key, id, at, body)
	for _, s := range strings.Fields(signatures) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return errors.New("no v1 signature matches")
}

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 when absent or past.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
