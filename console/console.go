package console

import (
	"context"
	"crypto/hmac"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/readapi"
)

// Alerts reads stored alerts (alerting.Reader).
type Alerts interface {
	List(ctx context.Context, q alerting.Query) ([]alerting.Alert, error)
	Get(ctx context.Context, fingerprint string) (alerting.Alert, bool, error)
	History(ctx context.Context, fingerprint string, limit int) ([]alerting.Change, error)
}

// Silences lists, creates and expires silences (alerting.SilenceAPI).
type Silences interface {
	List(ctx context.Context) ([]alerting.Silence, error)
	Create(ctx context.Context, in alerting.NewSilence) (alerting.Silence, error)
	Expire(ctx context.Context, id, by string) (alerting.Silence, error)
}

// Actions reads pending actions and the audit, and approves or refuses actions under the revoke
// policy's guardrails (action.Revoker and action's reads).
type Actions interface {
	Pending(ctx context.Context) ([]action.Pending, error)
	Audit(ctx context.Context, q action.AuditQuery) ([]action.AuditEntry, error)
	Approve(ctx context.Context, id string, by action.Person) (string, error)
	Refuse(ctx context.Context, id string, by action.Person, reason string) (string, error)
	// Rejected audits an authenticated request that was refused.
	Rejected(ctx context.Context, source, reason, detail string)
}

// Resources builds the read API's keys and rotations (readapi.API).
type Resources interface {
	KeyOf(ctx context.Context, id string) (readapi.Key, error)
	RotationList(ctx context.Context, limit int) ([]readapi.Rotation, error)
	RotationOf(ctx context.Context, id string) (readapi.RotationDetail, error)
}

// Options are what a Console is made of.
type Options struct {
	Config config.Console
	// Tokens are the bearer tokens a person may sign in with (http.token, write_token, read_token).
	Tokens    api.Tokens
	Alerts    Alerts
	Silences  Silences
	Actions   Actions
	Resources Resources
	// Refusals counts and logs requests refused before they are authenticated (refusal.Log).
	Refusals api.Refusals
	Log      *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Console serves the web console.
type Console struct {
	o     Options
	keys  keys
	proxy proxy
	pages map[string]*template.Template
	mux   *http.ServeMux
}

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Prefix is where the console is served.
const Prefix = "/console/"

// New returns the console of o; o.Config.SessionKey must be set (Config.Enabled).
func New(o Options) (*Console, error) {
	if !o.Config.Enabled() {
		return nil, errors.New("console: console.session_key is not set")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	c := &Console{o: o, keys: keys{secret: []byte(o.Config.SessionKey)},
		proxy: proxy{trusted: o.Config.TrustedPrefixes(), header: http.CanonicalHeaderKey(strings.TrimSpace(o.Config.UserHeader)), approvers: o.Config.Approvers}}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c.pages = pages
	static, _ := fs.Sub(staticFiles, "static")
	m := http.NewServeMux()
	m.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /console/login", c.loginPage)
	m.HandleFunc("POST /console/login", c.login)
	m.HandleFunc("POST /console/logout", c.logout)
	m.Handle("GET /console/{$}", c.page(c.alerts))
	m.Handle("GET /console/alerts/{fingerprint}", c.page(c.alert))
	m.Handle("GET /console/rotations", c.page(c.rotations))
	m.Handle("GET /console/rotation", c.page(c.rotation))
	m.Handle("GET /console/keys/{id}", c.page(c.key))
	m.Handle("GET /console/silences", c.page(c.silences))
	m.Handle("POST /console/silences", c.change(c.createSilence))
	m.Handle("POST /console/silences/{id}/expire", c.change(c.expireSilence))
	m.Handle("GET /console/actions", c.page(c.actions))
	m.Handle("POST /console/actions/{id}/approve", c.change(c.approveAction))
	m.Handle("POST /console/actions/{id}/refuse", c.change(c.refuseAction))
	c.mux = m
	return c, nil
}

// ServeHTTP serves /console/ and everything under it, every answer with the security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	c.mux.ServeHTTP(w, r)
}

// who returns the identity of r: the authenticating proxy's user, else the session cookie's.
func (c *Console) who(r *http.Request) (identity, bool) {
	if user, ok := c.proxy.identity(r); ok {
		return identity{ID: user, Name: user, Via: viaProxy, Scope: api.ScopeWrite, Approver: c.proxy.approver(user),
			csrf: c.keys.csrfFor(viaProxy, user)}, true
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return identity{}, false
	}
	s, ok := c.keys.open(ck.Value, c.o.Tokens, c.o.Now())
	if !ok {
		return identity{}, false
	}
	return identity{ID: s.Name + "/" + s.Scope.String() + "-token", Name: s.Name, Via: viaSession, Scope: s.Scope,
		Approver: s.Scope >= api.ScopeAdmin, csrf: c.keys.csrfFor(viaSession, s.Nonce)}, true
}

// page serves a GET page to a signed-in person, and sends anyone else to sign in.
func (c *Console) page(serve func(w http.ResponseWriter, r *http.Request, id identity)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := c.who(r)
		if !ok {
			c.refuse(r, "no session")
			http.Redirect(w, r, "/console/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		serve(w, r, id)
	})
}

// maxForm bounds a form's body.
const maxForm = 16 << 10

// change serves a POST that changes something: only to a signed-in person, from this site, with
// the CSRF token of their session. A refusal of a signed-in person is audited.
func (c *Console) change(serve func(w http.ResponseWriter, r *http.Request, id identity)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := c.who(r)
		if !ok {
			c.refuse(r, "no session")
			c.fail(w, identity{}, http.StatusUnauthorized, "Sign in first: this request has no console session.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			c.fail(w, id, http.StatusBadRequest, "The form could not be read: "+err.Error())
			return
		}
		if !sameOrigin(r) || !validCSRF(r.PostFormValue("csrf"), id.csrf) {
			c.reject(r, id, "csrf_token_mismatch")
			c.fail(w, id, http.StatusForbidden, "Refused: the form's CSRF token does not belong to your session, or the request came from another site. Reload the page and try again.")
			return
		}
		serve(w, r, id)
	})
}

// validCSRF compares a form's CSRF token with the session's in constant time.
func validCSRF(got, want string) bool {
	return got != "" && hmac.Equal([]byte(got), []byte(want))
}

// refuse counts and logs a request refused before it is authenticated.
func (c *Console) refuse(r *http.Request, reason string) {
	if c.o.Refusals != nil {
		c.o.Refusals.Refuse(r, "console", reason)
	}
}

// reject audits a signed-in person's request that was refused.
func (c *Console) reject(r *http.Request, id identity, reason string) {
	detail := cut("console user "+id.ID+" ("+id.Via+"): "+r.Method+" "+r.URL.Path, 300)
	c.o.Actions.Rejected(r.Context(), "console", reason, detail)
}

// person is the identity as the action audit records it.
func (id identity) person() action.Person {
	return action.Person{Source: "console", ID: id.ID, Name: id.Name}
}

// cut shortens s to at most n bytes, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
