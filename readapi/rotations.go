package readapi

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/rotation"
)

// The bounds of the rotation resources: the list holds the running rotations and those finished
// within RecentDays; a rotation's burn-down covers its MaxBurnDownClients busiest clients with at
// most MaxBurnDownPoints points each: hourly while the rotation is less than that many hours old,
// else daily over at most that many days up to now.
const (
	MaxBurnDownClients = 100
	MaxBurnDownPoints  = 168
)

// Rotations is the answer of GET /v1/rotations.
type Rotations struct {
	Rotations  []Rotation `json:"rotations"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// Rotations serves GET /v1/rotations: running rotations and those finished within RecentDays,
// latest started first.
func (a *API) Rotations(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.RawQuery, "limit", "cursor")
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, cursor, err := p.page()
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	after, hasAfter := position{}, cursor != ""
	if hasAfter {
		if after, err = parsePosition(cursor); err != nil {
			api.WriteError(w, http.StatusBadRequest, fmt.Sprintf("cursor %q: not a next_cursor this API gave", cut(p.get("cursor"))))
			return
		}
	}
	out, err := a.rotationPage(r.Context(), after, hasAfter, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// RotationList returns the rotations GET /v1/rotations lists (the running ones and those finished
// within RecentDays, latest started first), at most limit, without paging. It returns an error
// wrapping ErrBadRequest for a limit out of 1 to MaxLimit, and a failed read as it is.
func (a *API) RotationList(ctx context.Context, limit int) ([]Rotation, error) {
	if limit < 1 || limit > MaxLimit {
		return nil, badRequest(fmt.Errorf("limit %d: want a whole number from 1 to %d", limit, MaxLimit))
	}
	out, err := a.rotationPage(ctx, position{}, false, limit)
	return out.Rotations, err
}

// rotationPage is the page of the listed rotations after a position (from the first when
// !hasAfter), at most limit, as of now.
func (a *API) rotationPage(ctx context.Context, after position, hasAfter bool, limit int) (Rotations, error) {
	m, err := a.models.Load(ctx)
	if err != nil {
		return Rotations{}, err
	}
	now := a.now().UTC()
	page, next := listRotations(m, now, after, hasAfter, limit)
	out := Rotations{Rotations: make([]Rotation, 0, len(page))}
	for _, rot := range page {
		out.Rotations = append(out.Rotations, summary(rot, now))
	}
	if next != nil {
		out.NextCursor = encodeCursor(positionOf(next).String())
	}
	return out, nil
}

// position is where a rotation sorts in the list: latest started first, then by id.
type position struct {
	started int64 // Unix ms
	id      string
}

func positionOf(r *rotation.Rotation) position { return position{r.Started.UnixMilli(), r.ID} }

func (p position) String() string { return strconv.FormatInt(p.started, 10) + " " + p.id }

func parsePosition(s string) (position, error) {
	ms, id, ok := strings.Cut(s, " ")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || id == "" {
		return position{}, fmt.Errorf("not a rotation position: %q", s)
	}
	return position{n, id}, nil
}

func (p position) compare(q position) int {
	return cmp.Or(-cmp.Compare(p.started, q.started), cmp.Compare(p.id, q.id))
}

// listRotations is the page of m's listed rotations after a position (from the first when
// !hasAfter), at most limit, and the last of the page when more follow (nil when none do).
func listRotations(m *rotation.Model, now time.Time, after position, hasAfter bool, limit int) (page []*rotation.Rotation, next *rotation.Rotation) {
	recent := now.Add(-RecentDays * 24 * time.Hour)
	var all []*rotation.Rotation
	for _, r := range m.Rotations {
		if (r.Running() || !r.Finished.Before(recent)) && (!hasAfter || positionOf(r).compare(after) > 0) {
			all = append(all, r)
		}
	}
	slices.SortFunc(all, func(a, b *rotation.Rotation) int { return positionOf(a).compare(positionOf(b)) })
	if len(all) > limit {
		return all[:limit], all[limit-1]
	}
	return all, nil
}

// RotationDetail is the answer of GET /v1/rotations/{id}.
type RotationDetail struct {
	Rotation
	BurnDown BurnDown `json:"burn_down"`
	// Readiness is the old key's readiness answer, without its callers: Stragglers lists those
	// still on the old key (at most 50, StragglersUnlisted counts the rest). Null when the old
	// key's readiness is about a later rotation of it.
	Readiness          *ReadinessSummary `json:"readiness"`
	Stragglers         []detect.Caller   `json:"stragglers"`
	StragglersUnlisted int               `json:"stragglers_unlisted"`
}

// ReadinessSummary is the verdict of a readiness answer (GET /v1/keys/{id}/readiness).
type ReadinessSummary struct {
	Verdict   string    `json:"verdict"`
	Safe      bool      `json:"safe"`
	Reason    string    `json:"reason"`
	CheckedAt time.Time `json:"checked_at"`
}

// BurnDown is each client's share of requests on the new key, per step since the rotation started.
type BurnDown struct {
	Step             string           `json:"step"` // hour or day
	From             time.Time        `json:"from"`
	To               time.Time        `json:"to"`
	Clients          []ClientBurnDown `json:"clients"`
	ClientsTruncated bool             `json:"clients_truncated"`
}

// ClientBurnDown is one client's requests on the old and new key since From, and per step (only
// the steps with requests).
type ClientBurnDown struct {
	ClientID    string          `json:"client_id"` // "" for requests without a client
	OldRequests uint64          `json:"old_key_requests"`
	NewRequests uint64          `json:"new_key_requests"`
	NewKeyShare float64         `json:"new_key_share"`
	Points      []BurnDownPoint `json:"points"`
}

// BurnDownPoint is one step of a client's burn-down.
type BurnDownPoint struct {
	At          time.Time `json:"at"`
	OldRequests uint64    `json:"old_key_requests"`
	NewRequests uint64    `json:"new_key_requests"`
	NewKeyShare float64   `json:"new_key_share"`
}

// burnDownSpan is the step and start of a burn-down from started to now: hourly while that is
// less than MaxBurnDownPoints hours, else daily from at most MaxBurnDownPoints days before now.
func burnDownSpan(started, now time.Time) (step time.Duration, from time.Time) {
	from = started.UTC().Truncate(time.Hour)
	if now.Sub(from) < MaxBurnDownPoints*time.Hour {
		return time.Hour, from
	}
	day := 24 * time.Hour
	from = from.Truncate(day)
	if earliest := now.Truncate(day).Add(-(MaxBurnDownPoints - 1) * day); from.Before(earliest) {
		from = earliest
	}
	return day, from
}

// rotationID checks a rotation id, old>new, both valid key ids.
func rotationID(id string) error {
	old, nw, ok := strings.Cut(id, ">")
	if !ok || old == "" || nw == "" {
		return fmt.Errorf("rotation id %q: want old_key_id>new_key_id", cut(id))
	}
	if err := ingest.ValidateID("rotation id", old); err != nil {
		return err
	}
	return ingest.ValidateID("rotation id", nw)
}

// Rotation serves GET /v1/rotations/{id} (id: old_key_id>new_key_id, URL-encoded), 404 for a
// rotation no lifecycle event started.
func (a *API) Rotation(w http.ResponseWriter, r *http.Request) {
	if _, err := parseParams(r.URL.RawQuery); err != nil {
		api.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := a.RotationOf(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// RotationOf builds GET /v1/rotations/{id}'s resource as of now: the rotation, its burn-down, and
// the old key's readiness with its stragglers. It returns an error wrapping ErrBadRequest for an id
// not of the form old_key_id>new_key_id (both valid key ids), ErrNotFound for a rotation no
// lifecycle event started, and a failed read as it is.
func (a *API) RotationOf(ctx context.Context, id string) (RotationDetail, error) {
	if err := rotationID(id); err != nil {
		return RotationDetail{}, badRequest(err)
	}
	now := a.now().UTC()
	m, err := a.models.Load(ctx)
	if err != nil {
		return RotationDetail{}, err
	}
	i := slices.IndexFunc(m.Rotations, func(rot *rotation.Rotation) bool { return rot.ID == id })
	if i < 0 {
		return RotationDetail{}, notFound("no rotation %s", id)
	}
	rot := m.Rotations[i]
	out := RotationDetail{Rotation: summary(rot, now), Stragglers: []detect.Caller{}}
	step, from := burnDownSpan(rot.Started, now)
	out.BurnDown = BurnDown{Step: map[time.Duration]string{time.Hour: "hour", 24 * time.Hour: "day"}[step], From: from, To: now,
		Clients: []ClientBurnDown{}}
	clients, more, err := ingest.RotationBurnDown(ctx, a.conn, rot.OldKeyID, rot.NewKeyID, from, step, MaxBurnDownClients)
	if err != nil {
		return RotationDetail{}, err
	}
	out.BurnDown.ClientsTruncated = more
	for _, c := range clients {
		cb := ClientBurnDown{ClientID: c.ClientID, OldRequests: c.OldRequests, NewRequests: c.NewRequests,
			NewKeyShare: share(c.NewRequests, c.OldRequests), Points: make([]BurnDownPoint, 0, len(c.Points))}
		for _, p := range c.Points {
			cb.Points = append(cb.Points, BurnDownPoint{At: p.At, OldRequests: p.OldRequests, NewRequests: p.NewRequests, NewKeyShare: share(p.NewRequests, p.OldRequests)})
		}
		out.BurnDown.Clients = append(out.BurnDown.Clients, cb)
	}
	rep, err := a.readiness.ReadinessIn(ctx, m, now, rot.OldKeyID)
	if err != nil {
		return RotationDetail{}, err
	}
	if rep.RotationID == rot.ID {
		out.Readiness = &ReadinessSummary{Verdict: rep.Verdict, Safe: rep.Safe, Reason: rep.Reason, CheckedAt: rep.CheckedAt.UTC()}
		if rep.Remaining != nil {
			out.Stragglers = rep.Remaining
		}
		out.StragglersUnlisted = rep.Unlisted
	}
	return out, nil
}
