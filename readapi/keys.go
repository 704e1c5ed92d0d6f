package readapi

import (
	"context"
	"net/http"
	"time"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/rotation"
)

// The bounds of a key's answer: its callers, networks and countries are read over the last
// RecentDays days and each list keeps the busiest MaxCallers, MaxNetworks or MaxCountries, with a
// flag saying when there were more.
const (
	RecentDays   = 30
	MaxCallers   = 100
	MaxNetworks  = 100
	MaxCountries = 100
)

// Key is the answer of GET /v1/keys/{id}.
type Key struct {
	KeyID    string `json:"key_id"`
	ClientID string `json:"client_id,omitempty"`
	// State is rotation.State, or "unknown" for a key seen in traffic without lifecycle events.
	State     string     `json:"state"`
	Created   *time.Time `json:"created,omitempty"`
	Updated   *time.Time `json:"updated,omitempty"`
	Version   string     `json:"version,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	// Rotation is the rotation that retires the key, Predecessor the one that introduced it.
	Rotation    *Rotation `json:"rotation,omitempty"`
	Predecessor *Rotation `json:"predecessor,omitempty"`
	LastUse     LastUse   `json:"last_use"`
	// Window is the time Callers, Networks and Countries cover.
	Window             Window    `json:"window"`
	Callers            []Caller  `json:"callers"`
	CallersTruncated   bool      `json:"callers_truncated"`
	Networks           []Network `json:"networks"`
	NetworksTruncated  bool      `json:"networks_truncated"`
	Countries          []Country `json:"countries"`
	CountriesTruncated bool      `json:"countries_truncated"`
}

// LastUse is a key's use of all time, and its last success within the rollups' retention.
type LastUse struct {
	Requests    uint64     `json:"requests"`
	FirstSeen   *time.Time `json:"first_request,omitempty"`
	LastSeen    *time.Time `json:"last_request,omitempty"`
	LastSuccess *time.Time `json:"last_success,omitempty"`
}

// Window is a span of time an answer's lists cover.
type Window struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	Days int       `json:"days"`
}

// Caller is a client, or an address and user agent for the requests without a client, with its
// requests on the key and, when a rotation retires the key, on the new key.
type Caller struct {
	ClientID    string     `json:"client_id,omitempty"`
	IP          string     `json:"ip,omitempty"`
	UserAgent   string     `json:"user_agent,omitempty"`
	Requests    uint64     `json:"requests"`
	Failures    uint64     `json:"failures"`
	LastSeen    time.Time  `json:"last_request"`
	LastSuccess *time.Time `json:"last_success,omitempty"`
	// NewKeyRequests and NewKeyShare (new / (this key + new), 0 to 1) are there when a rotation
	// retires the key.
	NewKeyRequests *uint64  `json:"new_key_requests,omitempty"`
	NewKeyShare    *float64 `json:"new_key_share,omitempty"`
}

// Network is a network the key was used from: AS<number>, or a /24 or /48 when the ASN is unknown.
type Network struct {
	Network  string    `json:"network"`
	ASN      uint32    `json:"asn,omitempty"`
	ASOrg    string    `json:"as_org,omitempty"`
	Requests uint64    `json:"requests"`
	Failures uint64    `json:"failures"`
	LastSeen time.Time `json:"last_request"`
}

// Country is a country the key was used from (ISO 3166-1 alpha-2).
type Country struct {
	Country  string `json:"country"`
	Requests uint64 `json:"requests"`
}

// Key serves GET /v1/keys/{id}: 404 for a key neither lifecycle events nor traffic know.
func (a *API) Key(w http.ResponseWriter, r *http.Request) {
	if _, err := parseParams(r.URL.RawQuery); err != nil {
		api.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := a.KeyOf(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// KeyOf builds GET /v1/keys/{id}'s resource as of now. It returns an error wrapping ErrBadRequest
// for an id ingest.ValidateID refuses, ErrNotFound for a key neither lifecycle events nor stored
// traffic know, and a failed read as it is.
func (a *API) KeyOf(ctx context.Context, id string) (Key, error) {
	if err := ingest.ValidateID("key_id", id); err != nil {
		return Key{}, badRequest(err)
	}
	now := a.now().UTC()
	m, err := a.models.Load(ctx)
	if err != nil {
		return Key{}, err
	}
	use, used, err := ingest.ReadKeyUse(ctx, a.conn, id)
	if err != nil {
		return Key{}, err
	}
	k := m.Key(id)
	if k == nil && !used {
		return Key{}, notFound("unknown key %s: no lifecycle events and no stored traffic", id)
	}
	out := Key{KeyID: id, ClientID: use.ClientID, State: "unknown",
		LastUse: LastUse{Requests: use.Requests, FirstSeen: ptime(use.FirstSeen), LastSeen: ptime(use.LastSeen), LastSuccess: ptime(use.LastOK)}}
	newKey := ""
	if k != nil {
		out.State, out.Created, out.Updated = string(k.State), ptime(k.Created), ptime(k.Updated)
		out.Version, out.ExpiresAt, out.Scopes = k.Version, ptime(k.ExpiresAt), k.Scopes
		if k.ClientID != "" {
			out.ClientID = k.ClientID
		}
		if k.Rotation != nil {
			rot := summary(k.Rotation, now)
			out.Rotation, newKey = &rot, k.Rotation.NewKeyID
		}
		if k.Predecessor != nil {
			rot := summary(k.Predecessor, now)
			out.Predecessor = &rot
		}
	}
	from := now.Add(-RecentDays * 24 * time.Hour)
	out.Window = Window{From: from, To: now, Days: RecentDays}
	callers, more, err := ingest.KeyCallers(ctx, a.conn, id, newKey, from, MaxCallers)
	if err != nil {
		return Key{}, err
	}
	out.Callers, out.CallersTruncated = make([]Caller, 0, len(callers)), more
	for _, c := range callers {
		o := Caller{ClientID: c.ClientID, IP: c.Addr, UserAgent: c.UserAgent, Requests: c.Requests, Failures: c.Failures,
			LastSeen: c.LastSeen, LastSuccess: ptime(c.LastOK)}
		if newKey != "" {
			n, s := c.NewKeyRequests, share(c.NewKeyRequests, c.Requests)
			o.NewKeyRequests, o.NewKeyShare = &n, &s
		}
		out.Callers = append(out.Callers, o)
	}
	nets, more, err := ingest.KeyNetworks(ctx, a.conn, id, from, MaxNetworks)
	if err != nil {
		return Key{}, err
	}
	out.Networks, out.NetworksTruncated = make([]Network, 0, len(nets)), more
	for _, n := range nets {
		out.Networks = append(out.Networks, Network{Network: n.Network, ASN: n.ASN, ASOrg: n.ASOrg, Requests: n.Requests, Failures: n.Failures, LastSeen: n.LastSeen})
	}
	countries, more, err := ingest.KeyCountries(ctx, a.conn, id, from, MaxCountries)
	if err != nil {
		return Key{}, err
	}
	out.Countries, out.CountriesTruncated = make([]Country, 0, len(countries)), more
	for _, c := range countries {
		out.Countries = append(out.Countries, Country{Country: c.Country, Requests: c.Requests})
	}
	return out, nil
}

// Rotation is a rotation as lists and keys show it.
type Rotation struct {
	ID       string `json:"id"`
	ClientID string `json:"client_id,omitempty"`
	OldKeyID string `json:"old_key_id"`
	NewKeyID string `json:"new_key_id"`
	// State is "running" until the old key is retired or revoked, then "retired" or "revoked".
	State    string     `json:"state"`
	Started  time.Time  `json:"started"`
	Deadline *time.Time `json:"deadline,omitempty"`
	// Overdue is true for a running rotation whose deadline has passed.
	Overdue  bool       `json:"overdue"`
	Finished *time.Time `json:"finished,omitempty"`
	Reason   string     `json:"reason,omitempty"`
}

// summary is r as of now.
func summary(r *rotation.Rotation, now time.Time) Rotation {
	out := Rotation{ID: r.ID, ClientID: r.ClientID, OldKeyID: r.OldKeyID, NewKeyID: r.NewKeyID, State: "running",
		Started: r.Started.UTC(), Deadline: ptime(r.Deadline), Finished: ptime(r.Finished), Reason: r.Reason}
	if r.Running() {
		out.Overdue = !r.Deadline.IsZero() && now.After(r.Deadline)
		return out
	}
	for _, s := range r.Steps {
		if s.Kind != rotation.StepStarted && s.At.Equal(r.Finished) {
			out.State = string(s.Kind)
			break
		}
	}
	return out
}
