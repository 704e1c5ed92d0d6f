package console

import (
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// loginPage serves the sign-in form; a person the proxy already names goes straight on.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	next := nextPage(r.URL.Query().Get("next"))
	if _, ok := c.who(r); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	c.render(w, http.StatusOK, "login", identity{}, "Sign in", loginData{Next: next})
}

type loginData struct {
	Next, Name, Error string
}

// login exchanges a bearer token for a session cookie. A wrong token is refused before anything
// is stored, and counted (refusal.Log) like a wrong token on the API.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.refuse(r, "bad sign-in form")
		c.render(w, http.StatusBadRequest, "login", identity{}, "Sign in", loginData{Error: "The form could not be read."})
		return
	}
	next := nextPage(r.PostFormValue("next"))
	name := strings.TrimSpace(r.PostFormValue("name"))
	data := loginData{Next: next, Name: name}
	if !sameOrigin(r) {
		c.refuse(r, "cross-site sign-in")
		data.Error = "Refused: the sign-in came from another site."
		c.render(w, http.StatusForbidden, "login", identity{}, "Sign in", data)
		return
	}
	scope, ok := c.o.Tokens.Scope(strings.TrimSpace(r.PostFormValue("token")))
	if !ok {
		c.refuse(r, "wrong token")
		data.Error = "That token is none of keywatch's bearer tokens (http.token, http.write_token, http.read_token)."
		c.render(w, http.StatusUnauthorized, "login", identity{}, "Sign in", data)
		return
	}
	if !validName(name) {
		data.Error = "Give your name (at most 200 printable characters): the audit records it with every approval."
		c.render(w, http.StatusBadRequest, "login", identity{}, "Sign in", data)
		return
	}
	ttl := time.Duration(c.o.Config.SessionTTL)
	s := session{Name: name, Scope: scope, Token: c.keys.tokenTag(c.o.Tokens.Of(scope)), Expires: c.o.Now().Add(ttl).Unix(), Nonce: nonce()}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: c.keys.seal(s), Path: "/", MaxAge: int(ttl.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.o.Log.Info("console sign-in", "name", name, "scope", scope.String(), "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session on this browser. The cookie is signed, not stored: a copy taken
// elsewhere lasts until it expires or its token changes.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// nextPage is where to go after signing in: a console page of this site, never another site's.
func nextPage(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || strings.HasPrefix(next, "//") || strings.Contains(next, `\`) {
		return Prefix
	}
	p := path.Clean(u.Path)
	if !strings.HasPrefix(p+"/", Prefix) {
		return Prefix
	}
	if p+"/" == Prefix {
		p = Prefix
	}
	return (&url.URL{Path: p, RawQuery: u.RawQuery}).RequestURI()
}
