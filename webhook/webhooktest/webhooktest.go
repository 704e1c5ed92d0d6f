// Package webhooktest owns the test side of notification webhooks: an httptest receiver that
// verifies every delivery with the reference Standard Webhooks library
// (github.com/standard-webhooks/standard-webhooks/libraries/go) and records it, for the tests of
// webhook and of the packages that publish events. Only tests import it; it does not own
// signing or delivery (package webhook).
package webhooktest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keywatch/keywatch/internal/config"
)

// NewSecret returns a random Standard Webhooks secret: whsec_ and 24 bytes in base64.
func NewSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// Delivery is one request the receiver took.
type Delivery struct {
	ID, Timestamp, Signature string
	Body                     []byte
	Type                     string          // the payload's type
	Data                     json.RawMessage // the payload's data
	Status                   int             // what the receiver answered
}

// Receiver is an endpoint on loopback. Every request must verify with the reference library
// under its secret, or the test fails.
type Receiver struct {
	URL, Secret string

	t      testing.TB
	verify *standardwebhooks.Webhook
	mu     sync.Mutex
	got    []Delivery
	answer func(n int, d Delivery) int // n counts from 1
}

// NewReceiver starts a receiver that answers 200 to everything, closed when t ends.
func NewReceiver(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{Secret: NewSecret(t), t: t, answer: func(int, Delivery) int { return http.StatusOK }}
	var err error
	if r.verify, err = standardwebhooks.NewWebhook(r.Secret); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Answer sets what the receiver answers to its n-th request (n from 1).
func (r *Receiver) Answer(f func(n int, d Delivery) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer = f
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		r.t.Errorf("webhook receiver: read the body: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := r.verify.Verify(body, req.Header); err != nil {
		r.t.Errorf("webhook receiver: the reference library refuses %s (%s): %v", req.Header.Get("webhook-id"), body, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	d := Delivery{
		ID: req.Header.Get("webhook-id"), Timestamp: req.Header.Get("webhook-timestamp"),
		Signature: req.Header.Get("webhook-signature"), Body: body,
	}
	var p struct {
		Type      string          `json:"type"`
		Timestamp time.Time       `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Type == "" || p.Timestamp.IsZero() || len(p.Data) == 0 || p.Data[0] != '{' {
		r.t.Errorf("webhook receiver: %s is not a {type, timestamp, data} payload: %s", d.ID, body)
	}
	d.Type, d.Data = p.Type, p.Data
	r.mu.Lock()
	d.Status = r.answer(len(r.got)+1, d)
	r.got = append(r.got, d)
	r.mu.Unlock()
	w.WriteHeader(d.Status)
}

// Deliveries returns every request taken so far, in order.
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.got...)
}

// Delivered returns the deliveries answered 2xx, in order.
func (r *Receiver) Delivered() []Delivery {
	var out []Delivery
	for _, d := range r.Deliveries() {
		if d.Status >= 200 && d.Status < 300 {
			out = append(out, d)
		}
	}
	return out
}

// Endpoint is the configuration of an endpoint named name that posts to r, receiving events
// (every event when none).
func (r *Receiver) Endpoint(name string, events ...string) config.Webhook {
	return config.Webhook{Name: name, URL: r.URL, Secret: r.Secret, SecretFile: "(test)", Events: events}
}
