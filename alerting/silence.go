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
	// selectSilences reads the silences that end after ?.
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

// Silence mutes the alerts its matchers select between StartsAt and EndsAt. It is what
// /v1/silences lists and takes, and what SilenceAPI.List returns.
type Silence struct {
	ID        string         `json:"id"`
	Source    string         `json:"source"` // api, or config (the file's; not deletable here)
	Status    string         `json:"status"` // pending, active or expired, as of the answer
	Matchers  config.Matcher `json:"matchers"`
	StartsAt  time.Time      `json:"starts_at"`
	EndsAt    time.Time      `json:"ends_at"`
	CreatedBy string         `json:"created_by"`
	Comment   string         `json:"comment"`
	CreatedAt time.Time      `json:"created_at,omitzero"` // zero for the file's
	// Matching is how many open (pending or firing) alerts the matchers select now, whatever the
	// status; List fills it. /v1/silences does not show it.
	Matching int `json:"-"`

	version  uint64
	selector label.Matchers // Matchers, compiled
}

func (s Silence) activeAt(now time.Time) bool {
	return !now.Before(s.StartsAt) && now.Before(s.EndsAt)
}

// matches reports whether the silence selects an alert of labels l: mute's rule. A silence whose
// matchers did not compile mutes nothing.
func (s Silence) matches(l label.Set) bool {
	return len(s.selector) > 0 && s.selector.Matches(l)
}

func (s Silence) withStatus(now time.Time) Silence {
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
	config []Silence
}

func newSilenceStore(conn driver.Conn, fromConfig []config.Silence) *silenceStore {
	st := &silenceStore{conn: conn}
	for _, c := range fromConfig {
		raw, _ := json.Marshal(c)
		sum := sha256.Sum256(raw)
		st.config = append(st.config, Silence{
			ID: "config-" + hex.EncodeToString(sum[:6]), Source: "config", Matchers: c.Matchers, selector: c.Selector(),
			StartsAt: c.StartsAt.UTC(), EndsAt: c.EndsAt.UTC(), CreatedBy: c.CreatedBy, Comment: c.Comment,
		})
	}
	return st
}

// current returns the silences that have not ended by now (active and pending), by id.
func (st *silenceStore) current(ctx context.Context, now time.Time) ([]Silence, error) {
	return st.endingAfter(ctx, now, now)
}

// endingAfter returns the silences that end after t, by id, with their status as of now.
func (st *silenceStore) endingAfter(ctx context.Context, t, now time.Time) ([]Silence, error) {
	rows, err := st.conn.Query(ctx, selectSilences, ms(t))
	if err != nil {
		return nil, fmt.Errorf("alerting: read silences: %w", err)
	}
	out, err := scanSilences(rows)
	if err != nil {
		return nil, err
	}
	for _, s := range st.config {
		if t.Before(s.EndsAt) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Silence) int { return compareStrings(a.ID, b.ID) })
	for i := range out {
		out[i] = out[i].withStatus(now)
	}
	return out, nil
}

// active returns the silences in force at now.
func (st *silenceStore) active(ctx context.Context, now time.Time) ([]Silence, error) {
	all, err := st.current(ctx, now)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(s Silence) bool { return !s.activeAt(now) }), nil
}

func scanSilences(rows driver.Rows) ([]Silence, error) {
	defer rows.Close()
	var out []Silence
	for rows.Next() {
		var s Silence
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

func (st *silenceStore) get(ctx context.Context, id string) (*Silence, error) {
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

func (st *silenceStore) write(ctx context.Context, s Silence, expiredBy string, now time.Time) error {
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

// recentlyExpired is how long List shows a silence after it ended.
const recentlyExpired = 24 * time.Hour

// SilenceAPI serves GET /v1/silences (the active and pending silences, the file's included),
// POST /v1/silences (JSON {matchers, starts_at?, ends_at | duration, created_by, comment}; 201 with
// the silence) and DELETE /v1/silences/{id} (expires it now; ?expired_by=NAME is recorded).
// Times are kept to the millisecond. A silence lasting longer than alerting.silence_max_duration,
// or whose matchers are all *, is refused. Mount it behind the bearer check. List, Create and
// Expire are the same for Go callers (the web console).
type SilenceAPI struct {
	store       *silenceStore
	alerts      *Reader
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
		store: newSilenceStore(conn, cfg.Silences), alerts: NewReader(conn), maxDuration: maxDuration, log: log.With("component", "alerting"),
		now: time.Now, mux: http.NewServeMux(),
	}
	a.mux.HandleFunc("GET /v1/silences", a.list)
	a.mux.HandleFunc("POST /v1/silences", a.create)
	a.mux.HandleFunc("DELETE /v1/silences/{id}", a.expire)
	return a
}

func (a *SilenceAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// List returns the silences that have not ended (active and pending) and those that ended in the
// last 24 hours, the file's included, newest first (latest starts_at first, then by id), each with
// its status as of now and how many open (pending or firing) alerts its matchers select now
// (Matching), as the evaluator matches them.
func (a *SilenceAPI) List(ctx context.Context) ([]Silence, error) {
	now := a.now().UTC()
	all, err := a.newestFirst(ctx, now.Add(-recentlyExpired), now)
	if err != nil {
		return nil, err
	}
	alerts, err := a.alerts.Current(ctx)
	if err != nil {
		return nil, fmt.Errorf("alerting: count the alerts each silence matches: %w", err)
	}
	for _, al := range alerts {
		if al.State == Resolved {
			continue
		}
		l := LabelSet(al)
		for i := range all {
			if all[i].matches(l) {
				all[i].Matching++
			}
		}
	}
	return all, nil
}

// newestFirst returns the silences that end after t, the file's included, latest starts_at first
// (then by id), with their status as of now.
func (a *SilenceAPI) newestFirst(ctx context.Context, t, now time.Time) ([]Silence, error) {
	all, err := a.store.endingAfter(ctx, t, now)
	slices.SortStableFunc(all, func(x, y Silence) int { return y.StartsAt.Compare(x.StartsAt) }) // stable: then by id
	return all, err
}

// list serves GET /v1/silences: the silences that have not ended, as List orders them.
func (a *SilenceAPI) list(w http.ResponseWriter, r *http.Request) {
	now := a.now().UTC()
	current, err := a.newestFirst(r.Context(), now, now)
	if err != nil {
		a.fail(w, err)
		return
	}
	if current == nil {
		current = []Silence{}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"silences": current})
}

// NewSilence is a silence to create: what it matches, from when (StartsAt; zero: now) until when
// (EndsAt, or Duration after StartsAt: one of them), who made it and why.
type NewSilence struct {
	Matchers  config.Matcher
	StartsAt  time.Time
	EndsAt    time.Time
	Duration  time.Duration
	CreatedBy string
	Comment   string
}

// SilenceError is why Create refused a silence: every problem found, each starting with the
// name of the field it is about (as in POST /v1/silences' body: "ends_at: ...").
type SilenceError struct {
	Problems []error
}

func (e *SilenceError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, err := range e.Problems {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Create checks in as POST /v1/silences does and stores it as a new silence: it follows the
// rules of the file's silences (at least one matcher that is not *, created_by and comment given),
// ends after now and lasts at most alerting.silence_max_duration. Its times are kept to the
// millisecond. A refused silence's error is a *SilenceError; any other error is ClickHouse's.
func (a *SilenceAPI) Create(ctx context.Context, in NewSilence) (Silence, error) {
	now := a.now().UTC().Truncate(time.Millisecond)
	s, errs := in.silence(now, a.maxDuration)
	if len(errs) > 0 {
		return Silence{}, &SilenceError{Problems: errs}
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	s.ID, s.Source, s.CreatedAt, s.version = "sil-"+hex.EncodeToString(id[:]), "api", now, 1
	if err := a.store.write(ctx, s, "", now); err != nil {
		return Silence{}, err
	}
	a.log.Info("silence created", "silence", s.ID, "matchers", s.Matchers, "ends_at", s.EndsAt, "created_by", s.CreatedBy)
	return s.withStatus(now), nil
}

// silence checks in by the rules the file's silences follow, that it ends later and that it lasts
// at most maxDuration. Its times are kept to the millisecond, as stored.
func (in NewSilence) silence(now time.Time, maxDuration config.Duration) (Silence, []error) {
	s := Silence{Matchers: in.Matchers, StartsAt: now, CreatedBy: strings.TrimSpace(in.CreatedBy), Comment: strings.TrimSpace(in.Comment)}
	if !in.StartsAt.IsZero() {
		s.StartsAt = in.StartsAt.UTC().Truncate(time.Millisecond)
	}
	switch {
	case !in.EndsAt.IsZero() && in.Duration != 0:
		return s, []error{errors.New("ends_at: give ends_at or duration, not both")}
	case !in.EndsAt.IsZero():
		s.EndsAt = in.EndsAt.UTC().Truncate(time.Millisecond)
	case in.Duration < 0:
		return s, []error{fmt.Errorf("duration: %s: want a positive duration such as 2h", in.Duration)}
	case in.Duration > 0:
		s.EndsAt = s.StartsAt.Add(in.Duration).Truncate(time.Millisecond)
	}
	cs := config.Silence{Matchers: s.Matchers, StartsAt: s.StartsAt, EndsAt: s.EndsAt, CreatedBy: s.CreatedBy, Comment: s.Comment}
	errs := cs.Validate("")
	s.selector, _ = s.Matchers.Compile() // when Validate accepts them, they compile
	if !s.EndsAt.IsZero() && !s.EndsAt.After(now) {
		errs = append(errs, fmt.Errorf("ends_at: %s has passed", s.EndsAt.Format(time.RFC3339Nano)))
	}
	if cs.TooLong(now, maxDuration) {
		if in.Duration != 0 {
			errs = append(errs, fmt.Errorf("duration: %s is longer than alerting.silence_max_duration (%s): make it shorter, and a new silence when this one ends if still needed",
				in.Duration, maxDuration))
		} else {
			errs = append(errs, fmt.Errorf("ends_at: %s is more than alerting.silence_max_duration (%s) after starts_at %s: end it sooner, and make a new silence then if still needed",
				s.EndsAt.Format(time.RFC3339Nano), maxDuration, s.StartsAt.Format(time.RFC3339Nano)))
		}
	}
	return s, errs
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

// newSilence parses the request's times and duration.
func (in silenceRequest) newSilence() (NewSilence, []error) {
	var errs []error
	out := NewSilence{Matchers: in.Matchers, CreatedBy: in.CreatedBy, Comment: in.Comment}
	if in.StartsAt != "" {
		t, err := time.Parse(time.RFC3339, in.StartsAt)
		if err != nil {
			errs = append(errs, fmt.Errorf("starts_at: %q: want an RFC 3339 time", in.StartsAt))
		}
		out.StartsAt = t
	}
	switch {
	case in.EndsAt != "" && in.Duration != "":
		errs = append(errs, errors.New("ends_at: give ends_at or duration, not both"))
	case in.EndsAt != "":
		t, err := time.Parse(time.RFC3339, in.EndsAt)
		if err != nil {
			errs = append(errs, fmt.Errorf("ends_at: %q: want an RFC 3339 time", in.EndsAt))
		}
		out.EndsAt = t
	case in.Duration != "":
		d, err := time.ParseDuration(in.Duration)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("duration: %q: want a positive duration such as 2h", in.Duration))
		}
		out.Duration = d
	}
	return out, errs
}

const maxSilenceBody = 64 << 10

func (a *SilenceAPI) create(w http.ResponseWriter, r *http.Request) {
	var in silenceRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxSilenceBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		api.WriteError(w, http.StatusBadRequest, "body: want a JSON silence {matchers, starts_at, ends_at or duration, created_by, comment}: "+err.Error())
		return
	}
	ns, errs := in.newSilence()
	if len(errs) > 0 {
		api.WriteError(w, http.StatusBadRequest, (&SilenceError{Problems: errs}).Error())
		return
	}
	s, err := a.Create(r.Context(), ns)
	var refused *SilenceError
	switch {
	case errors.As(err, &refused):
		api.WriteError(w, http.StatusBadRequest, refused.Error())
	case err != nil:
		a.fail(w, err)
	default:
		api.WriteJSON(w, http.StatusCreated, s)
	}
}

// Expire's errors.
var (
	// ErrNoSilence: no silence has the id.
	ErrNoSilence = errors.New("no such silence")
	// ErrConfigSilence: the silence is the configuration file's, and only the file removes it.
	ErrConfigSilence = errors.New("the silence comes from the configuration file: remove it there")
)

// Expire ends the silence id now, recording by as who expired it, as DELETE /v1/silences/{id}
// does, and returns it as it is then; a silence that has ended already is left as it is. The
// error wraps ErrNoSilence for an unknown id and ErrConfigSilence for a silence of the
// configuration file; any other is ClickHouse's.
func (a *SilenceAPI) Expire(ctx context.Context, id, by string) (Silence, error) {
	now := a.now().UTC().Truncate(time.Millisecond)
	if strings.HasPrefix(id, "config-") {
		return Silence{}, fmt.Errorf("alerting: expire silence %s: %w", id, ErrConfigSilence)
	}
	s, err := a.store.get(ctx, id)
	if err != nil {
		return Silence{}, err
	}
	if s == nil {
		return Silence{}, fmt.Errorf("alerting: expire silence %s: %w", id, ErrNoSilence)
	}
	if now.Before(s.EndsAt) {
		s.EndsAt = now
		if s.StartsAt.After(now) {
			s.StartsAt = now
		}
		s.version++
		if err := a.store.write(ctx, *s, by, now); err != nil {
			return Silence{}, err
		}
		a.log.Info("silence expired", "silence", id, "expired_by", by)
	}
	return s.withStatus(now), nil
}

func (a *SilenceAPI) expire(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s, err := a.Expire(r.Context(), id, r.URL.Query().Get("expired_by"))
	switch {
	case errors.Is(err, ErrConfigSilence):
		api.WriteError(w, http.StatusConflict, "silence "+id+" comes from the configuration file: remove it there")
	case errors.Is(err, ErrNoSilence):
		api.WriteError(w, http.StatusNotFound, "no silence "+id)
	case err != nil:
		a.fail(w, err)
	default:
		api.WriteJSON(w, http.StatusOK, s)
	}
}

func (a *SilenceAPI) fail(w http.ResponseWriter, err error) {
	a.log.Error("silences API", "err", err)
	api.WriteError(w, http.StatusServiceUnavailable, "silences are unavailable: ClickHouse did not answer; try again")
}
