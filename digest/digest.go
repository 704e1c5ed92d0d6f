// Package digest owns rotation digests and nudges: a scheduled Slack summary of every rotation in
// flight, and one "safe to retire" message per rotation when its last straggler moved.
// It does not define "safe" (detect.Lingering's Readiness), alert (alerting) nor deliver (notify).
package digest

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/label"
	"github.com/keywatch/keywatch/notify"
	"github.com/keywatch/keywatch/rotation"
)

// Readier answers whether a key is safe to retire: detect.Lingering.
type Readier interface {
	ReadinessIn(ctx context.Context, m *rotation.Model, now time.Time, keyID string) (detect.Readiness, error)
}

// Poster queues a Slack message at most once per key and channel: notify.Slack.
type Poster interface {
	Post(ctx context.Context, p notify.Post) (bool, error)
}

// Report is every rotation in flight as of At.
type Report struct {
	At        time.Time  `json:"at"`
	Rotations []Rotation `json:"rotations"` // by deadline, soonest first; no deadline last
}

// Rotation is one rotation in flight: how far its traffic moved and what still holds it back.
type Rotation struct {
	ID       string     `json:"rotation_id"`
	ClientID string     `json:"client_id"`
	OldKeyID string     `json:"old_key_id"`
	NewKeyID string     `json:"new_key_id"`
	Started  time.Time  `json:"started"`
	Deadline *time.Time `json:"deadline,omitempty"`
	// Since is where the traffic counts start: the top of the hour the rotation started in.
	Since       time.Time `json:"since"`
	OldRequests uint64    `json:"old_requests"`
	NewRequests uint64    `json:"new_requests"`
	NewKeyShare float64   `json:"new_key_share"` // new / (old + new), 0..1; 0 without traffic
	Clients     []Client  `json:"clients"`       // busiest first
	// Stragglers, Safe and Reason are detect.Lingering's Readiness of the old key.
	Stragglers []detect.Caller `json:"stragglers"`
	Safe       bool            `json:"safe"`
	Reason     string          `json:"reason"`
	// Unlisted counts the stragglers readiness did not list (detect.Readiness.Unlisted).
	Unlisted int `json:"unlisted,omitempty"`
}

// Client is one client's traffic with a rotation's two keys since the rotation started.
type Client struct {
	ClientID    string     `json:"client_id"` // "" for callers the gateway could not resolve
	OldRequests uint64     `json:"old_requests"`
	NewRequests uint64     `json:"new_requests"`
	NewKeyShare float64    `json:"new_key_share"` // new / (old + new), 0..1
	OldLastSeen *time.Time `json:"old_last_seen,omitempty"`
	NewLastSeen *time.Time `json:"new_last_seen,omitempty"`
}

// Digest builds rotation digests and sends them, and the "safe to retire" nudges.
type Digest struct {
	conn  driver.Conn
	cfg   config.Digest
	slack config.Slack
	ready Readier
	post  Poster
	// publisher, when set (WithPublisher), takes digest.sent and rotation.safe_to_retire webhooks.
	publisher Publisher
	log       *slog.Logger
	now       func() time.Time
	retryOn   time.Duration // how long a scheduled send retries an unreachable ClickHouse
}

// New returns a Digest reading conn, judging readiness with ready (detect.NewLingering) and
// posting through post (notify.NewSlack); slack gives the default channel and the routes.
func New(conn driver.Conn, cfg config.Digest, slack config.Slack, ready Readier, post Poster, log *slog.Logger) *Digest {
	return &Digest{conn: conn, cfg: cfg, slack: slack, ready: ready, post: post, log: log, now: time.Now, retryOn: 30 * time.Minute}
}

// Build reads every rotation in flight (started, old key not retired or revoked yet) with its
// traffic shares and the readiness of its old key, as of now.
func (d *Digest) Build(ctx context.Context, now time.Time) (Report, error) {
	m, err := rotation.Load(ctx, d.conn)
	if err != nil {
		return Report{}, fmt.Errorf("digest: %w", err)
	}
	rep := Report{At: now.UTC(), Rotations: []Rotation{}}
	for _, k := range m.SortedKeys() {
		// A key's latest rotation is the one in flight; an earlier one it superseded is not.
		r := k.Rotation
		if r == nil || !r.Running() || r.OldKeyID != k.ID {
			continue
		}
		rr, err := d.rotation(ctx, m, now, r)
		if err != nil {
			return Report{}, err
		}
		rep.Rotations = append(rep.Rotations, rr)
	}
	slices.SortFunc(rep.Rotations, func(a, b Rotation) int {
		switch {
		case a.Deadline == nil && b.Deadline != nil:
			return 1
		case a.Deadline != nil && b.Deadline == nil:
			return -1
		case a.Deadline != nil && !a.Deadline.Equal(*b.Deadline):
			return a.Deadline.Compare(*b.Deadline)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return rep, nil
}

func (d *Digest) rotation(ctx context.Context, m *rotation.Model, now time.Time, r *rotation.Rotation) (Rotation, error) {
	out := Rotation{
		ID: r.ID, ClientID: r.ClientID, OldKeyID: r.OldKeyID, NewKeyID: r.NewKeyID,
		Started: r.Started, Since: r.Started.UTC().Truncate(time.Hour), Clients: []Client{},
	}
	if !r.Deadline.IsZero() {
		deadline := r.Deadline
		out.Deadline = &deadline
	}
	traffic, err := ingest.RotationTraffic(ctx, d.conn, r.OldKeyID, r.NewKeyID, r.Started)
	if err != nil {
		return Rotation{}, fmt.Errorf("digest: rotation %s: %w", r.ID, err)
	}
	for _, t := range traffic {
		c := Client{ClientID: t.ClientID, OldRequests: t.OldRequests, NewRequests: t.NewRequests}
		if c.OldRequests > 0 {
			last := t.OldLastSeen.UTC()
			c.OldLastSeen = &last
		}
		if c.NewRequests > 0 {
			last := t.NewLastSeen.UTC()
			c.NewLastSeen = &last
		}
		c.NewKeyShare = share(c.OldRequests, c.NewRequests)
		out.OldRequests += c.OldRequests
		out.NewRequests += c.NewRequests
		out.Clients = append(out.Clients, c)
	}
	slices.SortFunc(out.Clients, func(a, b Client) int {
		return cmp.Or(cmp.Compare(b.OldRequests+b.NewRequests, a.OldRequests+a.NewRequests), cmp.Compare(a.ClientID, b.ClientID))
	})
	out.NewKeyShare = share(out.OldRequests, out.NewRequests)

	ready, err := d.ready.ReadinessIn(ctx, m, now, r.OldKeyID)
	if err != nil {
		return Rotation{}, fmt.Errorf("digest: rotation %s: %w", r.ID, err)
	}
	out.Stragglers, out.Unlisted, out.Safe, out.Reason = ready.Remaining, ready.Unlisted, ready.Safe, ready.Reason
	return out, nil
}

func share(old, new uint64) float64 {
	if old+new == 0 {
		return 0
	}
	return float64(new) / float64(old+new)
}

// channels returns where a rotation of client is reported: the digest channel (every rotation),
// and, with digest.client_routes, the channels the route walk (label.Routes, as alerting walks
// them) gives a lingering finding of client over clientRoutes.
func (d *Digest) channels(client string) []string {
	var out []string
	if ch := d.defaultChannel(); ch != "" {
		out = append(out, ch)
	}
	if !d.cfg.ClientRoutes {
		return out
	}
	for _, ch := range clientRoutes(d.slack).Channels(label.Set{"detector": "lingering", "client_id": client}) {
		if !slices.Contains(out, ch) {
			out = append(out, ch)
		}
	}
	return out
}

// clientRoutes are the slack.routes a digest follows: those that select by client_id, without
// their severity matchers (a digest has no severity). Routes limited to detectors other than
// lingering do not match a digest.
func clientRoutes(s config.Slack) label.Routes {
	var out label.Routes
	for _, r := range s.Routing() {
		if r.Channel == "" || !r.Matchers.Names("client_id") {
			continue
		}
		r.Matchers = r.Matchers.Without("severity")
		out = append(out, r)
	}
	return out
}

// anyChannel reports whether any rotation could be reported anywhere.
func (d *Digest) anyChannel() bool {
	return d.defaultChannel() != "" || d.cfg.ClientRoutes && len(clientRoutes(d.slack)) > 0
}

func (d *Digest) defaultChannel() string {
	return cmp.Or(d.cfg.Channel, d.slack.DefaultChannel)
}

// byChannel splits rep into one report per channel, in channel order of first appearance.
func (d *Digest) byChannel(rep Report) (map[string]Report, []string) {
	out := map[string]Report{}
	var order []string
	for _, r := range rep.Rotations {
		for _, ch := range d.channels(r.ClientID) {
			cr, ok := out[ch]
			if !ok {
				cr = Report{At: rep.At}
				order = append(order, ch)
			}
			cr.Rotations = append(cr.Rotations, r)
			out[ch] = cr
		}
	}
	return out, order
}
