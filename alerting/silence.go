package alerting

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/label"
)

// Times are bound as Unix milliseconds and read with fromUnixTimestamp64Milli (see package schema):
// a time.Time argument would be written as whole seconds, and saturate in 2106.
const (
	selectSilences = `SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at, version
FROM silences FINAL
WHERE ends_at > fromUnixTimestamp64Milli(toInt64(?), 'UTC')`
	selectSilence = `SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at, version
FROM silences FINAL
WHERE id = ?`
	insertSilence = `INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, created_at, expired_by, updated_at, version)
VALUES (?, ?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, ?,
        fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?)`
)

// silence mutes the alerts its matchers select between StartsAt and EndsAt. It is what
// /v1/silences lists and takes.
type silence struct {
	ID        string         `json:"id"`
	Source    string         `json:"source"` // api, or config (the file's; not deletable here)
	Status    string         `json:"status"` // pending, active or expired, as of the answer
	Matchers  config.Matcher `json:"matchers"`
	StartsAt  time.Time      `json:"starts_at"`
	EndsAt    time.Time      `json:"ends_at"`
	CreatedBy string         `json:"created_by"`
	Comment   string         `json:"comment"`
	CreatedAt time.Time      `json:"created_at,omitzero"`
	version   uint64
	selector  label.Matchers // Matchers, compiled
}

func (s silence) activeAt(now time.Time) bool {
	return !now.Before(s.StartsAt) && now.Before(s.EndsAt)
}

func (s silence) withStatus(now time.Time) silence {
	switch {
	case !now.Before(s.EndsAt):
		s.Status = "expired"
	case now.Before(s.StartsAt):
		s.Status = "pending"
	default:
		s.Status = "active"
	}
	return s
}

// silenceStore reads and writes the silences table and knows the file's silences.
type silenceStore struct {
	conn   driver.Conn
	config []silence
}

func newSilenceStore(conn driver.Conn, fromConfig []config.Silence) *silenceStore {
	st := &silenceStore{conn: conn}
	for _, c := range fromConfig {
		raw, _ := json.Marshal(c)
		sum := sha256.Sum256(raw)
		st.config = append(st.config, silence{
			ID: "config-" + hex.EncodeToString(sum[:6]), Source: "config", Matchers: c.Matchers, selector: c.Selector(),
			StartsAt: c.StartsAt.UTC(), EndsAt: c.EndsAt.UTC(), CreatedBy: c.CreatedBy, Comment: c.Comment,
		})
	}
	return st
}

// current returns the silences that have not ended by now (active and pending), by id.
func (st *silenceStore) current(ctx context.Context, now time.Time) ([]silence, error) {
	rows, err := st.conn.Query(ctx, selectSilences, ms(now))
	if err != nil {
		return nil, fmt.Errorf("alerting: read silences: %w", err)
	}
	out, err := scanSilences(rows)
	if err != nil {
		return nil, err
	}
	for _, s := range st.config {
		if now.Before(s.EndsAt) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b silence) int { return compareStrings(a.ID, b.ID) })
	for i := range out {
		out[i] = out[i].withStatus(now)
	}
	return out, nil
}

// active returns the silences in force at now.
func (st *silenceStore) active(ctx context.Context, now time.Time) ([]silence, error) {
	all, err := st.current(ctx, now)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(s silence) bool { return !s.activeAt(now) }), nil
}

func scanSilences(rows driver.Rows) ([]silence, error) {
	defer rows.Close()
	var out []silence
	for rows.Next() {
		var s silence
		var matchers string
		if err := rows.Scan(&s.ID, &matchers, &s.StartsAt, &s.EndsAt, &s.CreatedBy, &s.Comment, &s.CreatedAt, &s.version); err != nil {
			return nil, fmt.Errorf("alerting: read silences: %w", err)
		}
		if err := json.Unmarshal([]byte(matchers), &s.Matchers); err != nil {
			return nil, fmt.Errorf("alerting: matchers of silence %s: %w", s.ID, err)
		}
		var err error
		if s.selector, err = s.Matchers.Compile(); err != nil {
			return nil, fmt.Errorf("alerting: matchers of silence %s: %w", s.ID, err)
		}
		s.Source = "api"
		s.StartsAt, s.EndsAt, s.CreatedAt = s.StartsAt.UTC(), s.EndsAt.UTC(), s.CreatedAt.UTC()
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alerting: read silences: %w", err)
	}
	return out, nil
}

func (st *silenceStore) get(ctx context.Context, id string) (*silence, error) {
	rows, err := st.conn.Query(ctx, selectSilence, id)
	if err != nil {
		return nil, fmt.Errorf("alerting: read silence %s: %w", id, err)
	}
	out, err := scanSilences(rows)
	if err != nil || len(out) == 0 {
		return nil, err
	}
	return &out[0], nil
}

func (st *silenceStore) write(ctx context.Context, s silence, expiredBy string, now time.Time) error {
	matchers, _ := json.Marshal(s.Matchers)
	err := schema.Retry(ctx, time.Minute, func(ctx context.Context) error {
		return st.conn.Exec(ctx, insertSilence, s.ID, string(matchers), s.StartsAt.UnixMilli(), s.EndsAt.UnixMilli(),
			s.CreatedBy, s.Comment, s.CreatedAt.UnixMilli(), expiredBy, now.UnixMilli(), s.version)
	})
	if err != nil {
		return fmt.Errorf("alerting: store silence %s: %w", s.ID, err)
	}
	return nil
}

// SilenceAPI serves GET /v1/silences (the active and pending silences, the file's included),
// POST /v1/silences (JSON {matchers, starts_at?, ends_at | duration, created_by, comment}; 201 with
// the silence) and DELETE /v1/silences/{id} (expires it now; ?expired_by=NAME is recorded).
// Times are kept to the millisecond. A silence lasting longer than alerting.silence_max_duration,
// or whose matchers are all *, is refused. Mount it behind the bearer check.
type SilenceAPI struct {
	store       *silenceStore
	maxDuration config.Duration
	log         *slog.Logger
	now         func() time.Time
	mux         *http.ServeMux
}

// NewSilenceAPI returns the silences API over conn (a migrated database); cfg.Silences are listed
// as the file's.
func NewSilenceAPI(conn driver.Conn, cfg config.Alerting, log *slog.Logger) *SilenceAPI {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxDuration := cfg.SilenceMaxDuration
	if maxDuration <= 0 {
		maxDuration = config.DefaultSilenceMaxDuration
	}
	a := &SilenceAPI{
		store: newSilenceStore(conn, cfg.Silences), maxDuration: maxDuration, log: log.With("component", "alerting"),
		now: time.Now, mux: http.NewServeMux(),
	}
	a.mux.HandleFunc("GET /v1/silences", a.list)
	a.mux.HandleFunc("POST /v1/silences", a.create)
	a.mux.HandleFunc("DELETE /v1/silences/{id}", a.expire)
	return a
}

func (a *SilenceAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *SilenceAPI) list(w http.ResponseWriter, r *http.Request) {
	all, err := a.store.current(r.Context(), a.now().UTC())
	if err != nil {
		a.fail(w, err)
		return
	}
	if all == nil {
		all = []silence{}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"silences": all})
}

// silenceRequest is the body of POST /v1/silences; times are RFC 3339, duration a Go duration.
type silenceRequest struct {
	Matchers  config.Matcher `json:"matchers"`
	StartsAt  string         `json:"starts_at"`
	EndsAt    string         `json:"ends_at"`
	Duration  string         `json:"duration"`
	CreatedBy string         `json:"created_by"`
	Comment   string         `json:"comment"`
}

const maxSilenceBody = 64 << 10

func (a *SilenceAPI) create(w http.ResponseWriter, r *http.Request) {
	now := a.now().UTC().Truncate(time.Millisecond)
	var in silenceRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxSilenceBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		api.WriteError(w, http.StatusBadRequest, "body: want a JSON silence {matchers, starts_at, ends_at or duration, created_by, comment}: "+err.Error())
		return
	}
	s, errs := in.silence(now, a.maxDuration)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, err := range errs {
			msgs[i] = err.Error()
		}
		api.WriteError(w, http.StatusBadRequest, strings.Join(msgs, "; "))
		return
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	s.ID, s.Source, s.CreatedAt, s.version = "sil-"+hex.EncodeToString(id[:]), "api", now, 1
	if err := a.store.write(r.Context(), s, "", now); err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("silence created", "silence", s.ID, "matchers", s.Matchers, "ends_at", s.EndsAt, "created_by", s.CreatedBy)
	api.WriteJSON(w, http.StatusCreated, s.withStatus(now))
}

// silence checks the request by the rules the file's silences follow, that it ends later and that it
// lasts at most maxDuration. Its times are kept to the millisecond, as stored.
func (in silenceRequest) silence(now time.Time, maxDuration config.Duration) (silence, []error) {
	var errs []error
	s := silence{Matchers: in.Matchers, StartsAt: now, CreatedBy: strings.TrimSpace(in.CreatedBy), Comment: strings.TrimSpace(in.Comment)}
	if in.StartsAt != "" {
		t, err := time.Parse(time.RFC3339, in.StartsAt)
		if err != nil {
			errs = append(errs, fmt.Errorf("starts_at: %q: want an RFC 3339 time", in.StartsAt))
		}
		s.StartsAt = t.UTC().Truncate(time.Millisecond)
	}
	switch {
	case in.EndsAt != "" && in.Duration != "":
		errs = append(errs, errors.New("ends_at: give ends_at or duration, not both"))
	case in.EndsAt != "":
		t, err := time.Parse(time.RFC3339, in.EndsAt)
		if err != nil {
			errs = append(errs, fmt.Errorf("ends_at: %q: want an RFC 3339 time", in.EndsAt))
		}
		s.EndsAt = t.UTC().Truncate(time.Millisecond)
	case in.Duration != "":
		d, err := time.ParseDuration(in.Duration)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("duration: %q: want a positive duration such as 2h", in.Duration))
		} else {
			s.EndsAt = s.StartsAt.Add(d).Truncate(time.Millisecond)
		}
	}
	if len(errs) > 0 {
		return s, errs
	}
	cs := config.Silence{Matchers: s.Matchers, StartsAt: s.StartsAt, EndsAt: s.EndsAt, CreatedBy: s.CreatedBy, Comment: s.Comment}
	errs = cs.Validate("")
	s.selector, _ = s.Matchers.Compile() // when Validate accepts them, they compile
	if !s.EndsAt.IsZero() && !s.EndsAt.After(now) {
		errs = append(errs, fmt.Errorf("ends_at: %s has passed", s.EndsAt.Format(time.RFC3339Nano)))
	}
	if cs.TooLong(now, maxDuration) {
		if in.Duration != "" {
			errs = append(errs, fmt.Errorf("duration: %s is longer than alerting.silence_max_duration (%s): make it shorter, and a new silence when this one ends if still needed",
				in.Duration, maxDuration))
		} else {
			errs = append(errs, fmt.Errorf("ends_at: %s is more than alerting.silence_max_duration (%s) after starts_at %s: end it sooner, and make a new silence then if still needed",
				s.EndsAt.Format(time.RFC3339Nano), maxDuration, s.StartsAt.Format(time.RFC3339Nano)))
		}
	}
	return s, errs
}

func (a *SilenceAPI) expire(w http.ResponseWriter, r *http.Request) {
	now := a.now().UTC().Truncate(time.Millisecond)
	id := r.PathValue("id")
	if strings.HasPrefix(id, "config-") {
		api.WriteError(w, http.StatusConflict, "silence "+id+" comes from the configuration file: remove it there")
		return
	}
	s, err := a.store.get(r.Context(), id)
	if err != nil {
		a.fail(w, err)
		return
	}
	if s == nil {
		api.WriteError(w, http.StatusNotFound, "no silence "+id)
		return
	}
	if now.Before(s.EndsAt) {
		by := r.URL.Query().Get("expired_by")
		s.EndsAt = now
		if s.StartsAt.After(now) {
			s.StartsAt = now
		}
		s.version++
		if err := a.store.write(r.Context(), *s, by, now); err != nil {
			a.fail(w, err)
			return
		}
		a.log.Info("silence expired", "silence", id, "expired_by", by)
	}
	api.WriteJSON(w, http.StatusOK, s.withStatus(now))
}

func (a *SilenceAPI) fail(w http.ResponseWriter, err error) {
	a.log.Error("silences API", "err", err)
	api.WriteError(w, http.StatusServiceUnavailable, "silences are unavailable: ClickHouse did not answer; try again")
}
