package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// demoWebhookSecret is the demo receiver's Standard Webhooks secret; a real one comes from
// KEYWATCH_REVOKE_WEBHOOK_SECRET or revoke.webhook_secret_file.
const demoWebhookSecret = "whsec_a2V5d2F0Y2gtZGVtby13ZWJob29rLXNlY3JldC0zMmI="

// demoReceiver stands in for a key-management system's revoke endpoint: it verifies each
// request's Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature over
// "id.timestamp.body" with the secret's key) and reports it. It answers 200 to a verified request
// and 401 to anything else.
type demoReceiver struct {
	key    []byte
	now    func() time.Time
	report func(r receivedRevoke)

	mu       sync.Mutex
	received []receivedRevoke
}

// receivedRevoke is one request the receiver took, verified or not.
type receivedRevoke struct {
	ID, Timestamp, Signature string
	Body                     string
	Verified                 bool
	Problem                  string // why it was not verified
}

func newDemoReceiver(secret string, report func(receivedRevoke)) (*demoReceiver, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		return nil, fmt.Errorf("demo: webhook secret: want whsec_<base64>")
	}
	return &demoReceiver{key: key, now: time.Now, report: report}, nil
}

// verify checks a request's signature headers against its body, as a receiver must: the
// timestamp within five minutes, one of the space-separated v1 signatures equal (constant time).
func (rr *demoReceiver) verify(id, ts, sigs string, body []byte) error {
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not unix seconds", ts)
	}
	if d := rr.now().Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("webhook-timestamp is %s away from now", d.Round(time.Second))
	}
	mac := hmac.New(sha256.New, rr.key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no v1 signature matches")
}

func (rr *demoReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	got := receivedRevoke{
		ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
		Signature: r.Header.Get("webhook-signature"), Body: string(body),
	}
	if err := rr.verify(got.ID, got.Timestamp, got.Signature, body); err != nil {
		got.Problem = err.Error()
	} else {
		got.Verified = true
	}
	rr.mu.Lock()
	rr.received = append(rr.received, got)
	rr.mu.Unlock()
	if rr.report != nil {
		rr.report(got)
	}
	if !got.Verified {
		http.Error(w, got.Problem, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"revoked":true,"webhook_id":%q}`, got.ID)
}

// Received returns what the receiver took so far.
func (rr *demoReceiver) Received() []receivedRevoke {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return append([]receivedRevoke(nil), rr.received...)
}

// serveLocal serves h on a free loopback port until the returned stop is called.
func serveLocal(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}
