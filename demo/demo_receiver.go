package demo

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/keywatch/keywatch/webhook"
)

// demoWebhookSecret is the demo receiver's Standard Webhooks secret; a real one comes from
// KEYWATCH_REVOKE_WEBHOOK_SECRET or revoke.webhook_secret_file.
const demoWebhookSecret = "whsec_a2V5d2F0Y2gtZGVtby13ZWJob29rLXNlY3JldC0zMmI="

// demoReceiver stands in for a key-management system's revoke endpoint: it verifies each
// request's Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature over
// "id.timestamp.body" with the secret's key) and reports it. It answers 200 to a verified request
// and 401 to anything else.
type demoReceiver struct {
	secret string
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

func newDemoReceiver(secret string, report func(receivedRevoke)) *demoReceiver {
	return &demoReceiver{secret: secret, now: time.Now, report: report}
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
	if err := webhook.Verify(rr.secret, got.ID, got.Timestamp, got.Signature, body, rr.now(), 5*time.Minute); err != nil {
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
