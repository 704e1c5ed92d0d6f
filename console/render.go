package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// view is what every page template gets.
type view struct {
	Title string
	// Nav is the section of the navigation the page belongs to.
	Nav string
	Me  identity
	// SignedIn is false on the sign-in page and on refusals before sign-in.
	SignedIn bool
	CSRF     string
	// Notice and Problem are the outcome of the form just sent.
	Notice, Problem string
	Now             time.Time
	Data            any
}

var funcs = template.FuncMap{
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"pstamp": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"ago": ago,
	"pct": func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"ppct": func(f *float64) string {
		if f == nil {
			return "—"
		}
		return fmt.Sprintf("%.0f%%", *f*100)
	},
	"pnum": func(n *uint64) string {
		if n == nil {
			return "—"
		}
		return fmt.Sprint(*n)
	},
	"rotationURL": rotationPath,
	"deref":       func(t *time.Time) time.Time { return *t },
	"upper":       strings.ToUpper,
	"sub":         func(a, b int) int { return a - b },
}

// ago says how long before now t was, in the largest two units.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, " from now"
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds%s", int(d.Seconds()), suffix)
	case d < time.Hour:
		return fmt.Sprintf("%dm%s", int(d.Minutes()), suffix)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm%s", int(d.Hours()), int(d.Minutes())%60, suffix)
	default:
		return fmt.Sprintf("%dd%02dh%s", int(d.Hours())/24, int(d.Hours())%24, suffix)
	}
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console: parse the layout: %w", err)
	}
	names, _ := fs.Glob(templateFiles, "templates/*.html")
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFiles, n)
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// render writes page with data inside the layout. A template that fails writes nothing of itself
// but a plain error.
func (c *Console) render(w http.ResponseWriter, code int, page string, id identity, title string, data any, outcome ...string) {
	v := view{Title: title, Nav: page, Me: id, SignedIn: id.ID != "", CSRF: id.csrf, Now: c.o.Now().UTC(), Data: data}
	if len(outcome) > 0 {
		v.Notice = outcome[0]
	}
	if len(outcome) > 1 {
		v.Problem = outcome[1]
	}
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.o.Log.Error("console: render a page", "page", page, "err", err)
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// fail answers with a page that says what went wrong.
func (c *Console) fail(w http.ResponseWriter, id identity, code int, msg string) {
	c.render(w, code, "problem", id, http.StatusText(code), nil, "", msg)
}

// unavailable answers 503 when a read failed (ClickHouse unreachable), logging the error.
func (c *Console) unavailable(w http.ResponseWriter, r *http.Request, id identity, what string, err error) {
	c.o.Log.Warn("console: a read failed", "what", what, "path", r.URL.Path, "err", err)
	c.fail(w, id, http.StatusServiceUnavailable, "Could not read "+what+": "+err.Error())
}
