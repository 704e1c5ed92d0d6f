package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/backoff"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/glob"
	"github.com/keywatch/keywatch/internal/schema"
)

// Row states.
const (
	statePending = "pending"
	stateSent    = "sent"
	stateFailed  = "failed"
)

// The results of an attempt, as counted in keywatch_webhook_deliveries_total.
const (
	resultDelivered = "delivered"
	resultRetry     = "retry"
	resultFailed    = "failed"
)

// row is one version of a webhook_deliveries row: one event for one endpoint.
type row struct {
	Endpoint      string    `ch:"endpoint"`
	ID            string    `ch:"id"`
	Type          string    `ch:"type"`
	Follows       string    `ch:"follows"`
	Body          string    `ch:"body"`
	State         string    `ch:"state"`
	Attempts      uint32    `ch:"attempts"`
	LastStatus    uint16    `ch:"last_status"`
	LastError     string    `ch:"last_error"`
	CreatedAt     time.Time `ch:"created_at"`
	NextAttemptAt time.Time `ch:"next_attempt_at"`
	UpdatedAt     time.Time `ch:"updated_at"`
	Version       uint64    `ch:"version"`
}

const (
	deliveryColumns = `endpoint, id, type, follows, body, state, attempts, last_status, last_error, created_at, next_attempt_at, updated_at, version`
	// selectRecent is every (endpoint, id) stored in the last knownFor: what Publish need not store
	// again, read once. Argument: the start (Unix ms).
	selectRecent = `SELECT DISTINCT endpoint, id FROM webhook_deliveries WHERE created_at >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')`
	// selectEndpointsOf is the endpoints an older event was stored for. Arguments: the event ids.
	selectEndpointsOf = `SELECT DISTINCT endpoint, id FROM webhook_deliveries WHERE id IN (?)`
	// selectPending is the outbox: every event not delivered or given up on yet, oldest first.
	selectPending  = `SELECT ` + deliveryColumns + ` FROM webhook_deliveries FINAL WHERE state = 'pending' ORDER BY created_at, id`
	insertDelivery = `INSERT INTO webhook_deliveries (` + deliveryColumns + `)`
)

type key struct{ endpoint, id string }

// endpoint is one configured endpoint with its decoded secret and compiled event globs.
type endpoint struct {
	config.Webhook
	key    []byte
	events []glob.Pattern
}

func (e endpoint) receives(typ string) bool {
	if len(e.events) == 0 {
		return true
	}
	for _, p := range e.events {
		if p.Match(typ) {
			return true
		}
	}
	return false
}

// Outbox stores published events (Publish) and delivers them (Run, on the leader). Any replica
// may publish; the leader's Run delivers what every replica stored.
type Outbox struct {
	conn       driver.Conn
	endpoints  []endpoint
	client     *http.Client
	metrics    *Metrics
	log        *slog.Logger
	now        func() time.Time
	poll       time.Duration // how often Run looks at the table without being woken
	backoff    time.Duration // the first retry's delay, doubling per attempt up to maxBackoff
	maxBackoff time.Duration
	rand       func(n int64) int64
	wake       chan struct{}

	mu sync.Mutex
	// known is what is stored: read back once for the last knownFor (selectRecent), for an older
	// id when it is published again (selectEndpointsOf), and added to by Publish. looked are the
	// ids known holds all of: the recent ones and those looked up.
	known  map[key]bool
	looked map[string]bool
	loaded bool
}

// knownFor is how far back the published ids are read at start. Producers publish again what
// they derive on each pass, mostly of the last day (alerts resolved within it, recent actions); an
// older id (a rotation safe to retire for weeks) is looked up in the table once.
const knownFor = 7 * 24 * time.Hour

// NewOutbox returns the outbox of the endpoints over conn (a migrated database). metrics may be
// nil. Without endpoints, Publish stores nothing and Run waits for its end.
func NewOutbox(conn driver.Conn, endpoints []config.Webhook, metrics *Metrics, log *slog.Logger) (*Outbox, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := &Outbox{
		conn: conn, metrics: metrics, log: log.With("component", "webhook"), now: time.Now,
		poll: 5 * time.Second, backoff: 5 * time.Second, maxBackoff: 10 * time.Minute, rand: rand.Int64N,
		wake: make(chan struct{}, 1), known: map[key]bool{}, looked: map[string]bool{},
		// Each attempt has its endpoint's timeout (send); redirects are answers, not followed.
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	for i, w := range endpoints {
		k, err := DecodeSecret(w.Secret)
		if err != nil {
			return nil, fmt.Errorf("webhook: webhooks[%d] (%s): %w", i, w.Name, err)
		}
		ep := endpoint{Webhook: w, key: k}
		for k, e := range w.Events {
			p, err := glob.Compile(e)
			if err != nil {
				return nil, fmt.Errorf("webhook: webhooks[%d].events[%d]: %w", i, k, err)
			}
			if !slices.ContainsFunc(Types(), p.Match) {
				return nil, fmt.Errorf("webhook: webhooks[%d].events[%d]: %q matches no event type (%s)", i, k, e, strings.Join(Types(), ", "))
			}
			ep.events = append(ep.events, p)
		}
		o.endpoints = append(o.endpoints, ep)
	}
	return o, nil
}

// Publish stores e for every endpoint that receives its type and has not got it yet, and
// returns: Run delivers it. Publishing an event id again stores nothing (the check is made in
// memory against what was stored, read back once), so producers may publish what they derive on
// every pass.
func (o *Outbox) Publish(ctx context.Context, e Event) error {
	if len(o.endpoints) == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.loadLocked(ctx); err != nil {
		return err
	}
	ids := []string{e.ID}
	if e.Follows != nil {
		ids = append(ids, e.Follows.ID)
	}
	if err := o.lookUpLocked(ctx, ids); err != nil {
		return err
	}
	var rows []row
	for _, ep := range o.endpoints {
		if !ep.receives(e.Type) || o.known[key{ep.Name, e.ID}] {
			continue
		}
		follows := ""
		if e.Follows != nil && ep.receives(e.Follows.Type) {
			if !o.known[key{ep.Name, e.Follows.ID}] {
				continue // the endpoint never got what this event follows
			}
			follows = e.Follows.ID
		}
		rows = append(rows, row{Endpoint: ep.Name, Follows: follows})
	}
	if len(rows) == 0 {
		return nil
	}
	body, err := e.Body()
	if err != nil {
		return err
	}
	now := o.now().UTC()
	for _, r := range rows {
		r.ID, r.Type, r.Body, r.State = e.ID, e.Type, string(body), statePending
		r.CreatedAt, r.NextAttemptAt, r.UpdatedAt, r.Version = now, now, now, 1
		if err := o.write(ctx, &r); err != nil {
			return err
		}
		o.known[key{r.Endpoint, r.ID}] = true
	}
	o.kick()
	return nil
}

func (o *Outbox) loadLocked(ctx context.Context) error {
	if o.loaded {
		return nil
	}
	since := o.now().Add(-knownFor)
	if err := o.readKnownLocked(ctx, selectRecent, since.UnixMilli()); err != nil {
		return fmt.Errorf("webhook: read the events published since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	for k := range o.known {
		o.looked[k.id] = true
	}
	o.loaded = true
	return nil
}

// lookUpLocked reads the endpoints stored for each id not looked up yet.
func (o *Outbox) lookUpLocked(ctx context.Context, ids []string) error {
	var missing []string
	for _, id := range ids {
		if !o.looked[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := o.readKnownLocked(ctx, selectEndpointsOf, missing); err != nil {
		return fmt.Errorf("webhook: look up events %s: %w", strings.Join(missing, ", "), err)
	}
	for _, id := range missing {
		o.looked[id] = true
	}
	return nil
}

// readKnownLocked adds the (endpoint, id) rows query selects to known.
func (o *Outbox) readKnownLocked(ctx context.Context, query string, args ...any) error {
	rows, err := o.conn.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.endpoint, &k.id); err != nil {
			return err
		}
		o.known[k] = true
	}
	return rows.Err()
}

// write stores one version of r, retrying while ClickHouse is unreachable (up to a minute); the
// deduplication token (endpoint, id and version) keeps a retried or repeated insert from
// counting twice.
func (o *Outbox) write(ctx context.Context, r *row) error {
	token := r.Endpoint + "/" + r.ID + "/" + strconv.FormatUint(r.Version, 10)
	if err := schema.InsertRow(ctx, o.conn, insertDelivery, token, r); err != nil {
		return fmt.Errorf("webhook: store %s event %s for endpoint %s (%s): %w", r.Type, r.ID, r.Endpoint, r.State, err)
	}
	return nil
}

// Run delivers the outbox until ctx ends (run it on the leader only): every poll, and at once
// when this process published something.
func (o *Outbox) Run(ctx context.Context) error {
	if len(o.endpoints) == 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(o.poll)
	defer t.Stop()
	for {
		if err := o.SendDue(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("webhook delivery pass failed; retrying at the next", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-o.wake:
		}
	}
}

// SendDue is one pass of Run: one attempt at every pending event whose next attempt is due,
// the endpoints in parallel, each endpoint's events oldest first; an event that follows another
// still pending for the same endpoint waits for it. An attempt to be retried ends its endpoint's
// pass: the endpoint's other events wait for the next pass rather than each wait for a timeout.
func (o *Outbox) SendDue(ctx context.Context) error {
	var rows []row
	if err := o.conn.Select(ctx, &rows, selectPending); err != nil {
		return fmt.Errorf("webhook: read the outbox: %w", err)
	}
	pending := map[key]bool{}
	per := map[string][]row{}
	queued := map[string]int{}
	for _, r := range rows {
		pending[key{r.Endpoint, r.ID}] = true
		per[r.Endpoint] = append(per[r.Endpoint], r)
	}
	for _, ep := range o.endpoints {
		queued[ep.Name] = len(per[ep.Name])
	}
	o.metrics.setQueued(queued)
	now := o.now()
	var wg sync.WaitGroup
	errs := make([]error, len(o.endpoints))
	delivered := make([]bool, len(o.endpoints))
	for i, ep := range o.endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range per[ep.Name] {
				if r.NextAttemptAt.After(now) || (r.Follows != "" && pending[key{ep.Name, r.Follows}]) {
					continue
				}
				result, err := o.attempt(ctx, ep, r)
				if err != nil {
					errs[i] = errors.Join(errs[i], err)
				}
				delivered[i] = delivered[i] || result == resultDelivered
				if result == resultRetry || ctx.Err() != nil {
					return // the endpoint is down or slow: its other events wait for the next pass
				}
			}
		}()
	}
	wg.Wait()
	if slices.Contains(delivered, true) {
		o.kick() // what followed the events just delivered is due now
	}
	return errors.Join(errs...)
}

func (o *Outbox) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// attempt sends r once, with a fresh webhook-timestamp and signature, and records the answer. An
// attempt cut short by ctx is not recorded: the event is sent again, with the same id and body.
func (o *Outbox) attempt(ctx context.Context, ep endpoint, r row) (string, error) {
	answer, err := o.send(ctx, ep, r)
	status, wait, excerpt := answer.Status, answer.RetryAfter, answer.Excerpt
	if ctx.Err() != nil {
		return "", nil
	}
	now := o.now().UTC()
	r.Attempts++
	r.LastStatus = uint16(status)
	r.UpdatedAt = now
	r.Version = max(r.Version+1, uint64(now.UnixNano()))
	deadline := r.CreatedAt.Add(ep.DeliveryMaxAge())
	result := resultRetry
	switch {
	case err == nil && status >= 200 && status < 300:
		r.State, r.LastError, result = stateSent, "", resultDelivered
	case err == nil && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests && status < 500:
		r.State, result = stateFailed, resultFailed
		r.LastError = fmt.Sprintf("the endpoint answered %d: %q", status, excerpt)
	default:
		if err != nil {
			r.LastError = err.Error()
		} else {
			r.LastError = fmt.Sprintf("the endpoint answered %d: %q", status, excerpt)
		}
		if !now.Before(deadline) {
			r.State, result = stateFailed, resultFailed
			r.LastError = fmt.Sprintf("undelivered after %d attempts over max_age %s; the last: %s", r.Attempts, ep.DeliveryMaxAge(), r.LastError)
			break
		}
		if wait <= 0 {
			wait = backoff.Policy{Initial: o.backoff, Max: o.maxBackoff, Jitter: backoff.Full}.WaitWith(int(r.Attempts), o.rand)
		}
		r.NextAttemptAt = minTime(now.Add(wait), deadline)
	}
	o.metrics.delivery(ep.Name, result)
	switch result {
	case resultDelivered:
		o.log.Info("webhook delivered", "endpoint", ep.Name, "type", r.Type, "id", r.ID, "status", status, "attempts", r.Attempts)
	case resultFailed:
		o.log.Error("webhook failed; not retried", "endpoint", ep.Name, "type", r.Type, "id", r.ID, "status", status, "attempts", r.Attempts, "err", r.LastError)
	default:
		o.log.Warn("webhook attempt failed; retrying", "endpoint", ep.Name, "type", r.Type, "id", r.ID, "status", status, "attempt", r.Attempts, "next", r.NextAttemptAt, "err", r.LastError)
	}
	return result, o.write(ctx, &r)
}

// send POSTs r's stored body to the endpoint, signed, within the endpoint's timeout. A transport
// error is returned without the URL, which may hold a token.
func (o *Outbox) send(ctx context.Context, ep endpoint, r row) (Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, ep.AttemptTimeout())
	defer cancel()
	a, err := Post(ctx, o.client, ep.URL, ep.key, r.ID, o.now(), []byte(r.Body))
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return a, err
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
