package console

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/readapi"
)

// rotationPath is the console page of rotation id (old_key_id>new_key_id).
func rotationPath(id string) string { return "/console/rotation?id=" + url.QueryEscape(id) }

// maxAlerts bounds each state's alerts read for the alerts page.
const maxAlerts = 500

// recentlyResolved is how long a resolved alert stays on the alerts page.
const recentlyResolved = 24 * time.Hour

// alertFilter is the alerts page's filter, from its query.
type alertFilter struct {
	Detector, Severity, Key, Client, State string
}

// alertGroup is the alerts of one rotation or key, as one Slack message shows them.
type alertGroup struct {
	Title, Link string
	Alerts      []alerting.Alert
}

type alertsData struct {
	Filter     alertFilter
	Detectors  []string
	Severities []string
	Groups     []alertGroup
	Count      int
	Truncated  bool
}

// alerts serves the alerts page: firing and pending alerts, and those resolved in the last day,
// grouped by rotation (else key) as in Slack, filtered by detector, severity, key and client.
func (c *Console) alerts(w http.ResponseWriter, r *http.Request, id identity) {
	q := r.URL.Query()
	f := alertFilter{Detector: cut(q.Get("detector"), 100), Severity: cut(q.Get("severity"), 20), Key: cut(strings.TrimSpace(q.Get("key")), 200),
		Client: cut(strings.TrimSpace(q.Get("client")), 200), State: cmp.Or(q.Get("state"), "open")}
	ctx, now := r.Context(), c.o.Now().UTC()
	var all []alerting.Alert
	truncated := false
	for _, states := range [][]alerting.State{{alerting.Firing, alerting.Pending}, {alerting.Resolved}} {
		if (f.State == "open" && states[0] == alerting.Resolved) || (f.State == "resolved" && states[0] != alerting.Resolved) {
			continue
		}
		got, err := c.o.Alerts.List(ctx, alerting.Query{States: states, KeyID: f.Key, Limit: maxAlerts})
		if err != nil {
			c.unavailable(w, r, id, "the alerts", err)
			return
		}
		truncated = truncated || len(got) == maxAlerts
		all = append(all, got...)
	}
	detectors := map[string]bool{}
	var shown []alerting.Alert
	for _, a := range all {
		detectors[a.Detector] = true
		switch {
		case a.State == alerting.Resolved && now.Sub(a.ResolvedAt) > recentlyResolved,
			f.Detector != "" && a.Detector != f.Detector,
			f.Severity != "" && a.Severity.String() != f.Severity,
			f.Client != "" && a.ClientID != f.Client:
			continue
		}
		shown = append(shown, a)
	}
	d := alertsData{Filter: f, Groups: groupAlerts(shown), Count: len(shown), Truncated: truncated,
		Severities: []string{finding.Critical.String(), finding.Warning.String(), finding.Info.String()}}
	for name := range detectors {
		d.Detectors = append(d.Detectors, name)
	}
	slices.Sort(d.Detectors)
	c.render(w, http.StatusOK, "alerts", id, "Alerts", d)
}

// groupAlerts groups alerts as Slack messages do (alerting.GroupKey): groups with firing alerts
// first, then by their most severe alert; in a group, firing first.
func groupAlerts(alerts []alerting.Alert) []alertGroup {
	byKey := map[string]*alertGroup{}
	var order []string
	for _, a := range alerts {
		k := alerting.GroupKey(a)
		g := byKey[k]
		if g == nil {
			g = newAlertGroup(k)
			byKey[k] = g
			order = append(order, k)
		}
		g.Alerts = append(g.Alerts, a)
	}
	out := make([]alertGroup, 0, len(order))
	for _, k := range order {
		g := byKey[k]
		slices.SortStableFunc(g.Alerts, func(a, b alerting.Alert) int {
			return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.Fingerprint, b.Fingerprint))
		})
		out = append(out, *g)
	}
	slices.SortStableFunc(out, func(a, b alertGroup) int {
		return cmp.Or(cmp.Compare(rank(a.Alerts[0]), rank(b.Alerts[0])), cmp.Compare(a.Title, b.Title))
	})
	return out
}

// newAlertGroup is the empty group of alerting.GroupKey k, titled and linked to its page.
func newAlertGroup(k string) *alertGroup {
	switch kind, name, _ := strings.Cut(k, ":"); kind {
	case "rotation":
		return &alertGroup{Title: "Rotation " + name, Link: rotationPath(name)}
	case "key":
		return &alertGroup{Title: "Key " + name, Link: "/console/keys/" + url.PathEscape(name)}
	default:
		return &alertGroup{Title: "Detector " + name}
	}
}

// rank orders alerts: firing, then pending, then resolved; in each, the most severe first.
func rank(a alerting.Alert) int {
	state := 2
	switch a.State {
	case alerting.Firing:
		state = 0
	case alerting.Pending:
		state = 1
	}
	return state*10 - int(a.Severity)
}

type alertData struct {
	Alert    alerting.Alert
	Evidence string
	History  []alerting.Change
	Audit    []action.AuditEntry
	// SilenceLink opens the silence form with this alert's matchers.
	SilenceLink string
}

// alert serves one alert: its fields, evidence, history and the actions taken on it.
func (c *Console) alert(w http.ResponseWriter, r *http.Request, id identity) {
	ctx, fp := r.Context(), r.PathValue("fingerprint")
	if len(fp) > 128 {
		c.fail(w, id, http.StatusBadRequest, "No alert has a fingerprint that long.")
		return
	}
	a, ok, err := c.o.Alerts.Get(ctx, fp)
	if err != nil {
		c.unavailable(w, r, id, "the alert", err)
		return
	}
	if !ok {
		c.fail(w, id, http.StatusNotFound, "No alert "+fp+".")
		return
	}
	d := alertData{Alert: a}
	if len(a.Evidence) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, a.Evidence, "", "  ") == nil {
			d.Evidence = cut(buf.String(), 16<<10)
		}
	}
	if d.History, err = c.o.Alerts.History(ctx, fp, 100); err != nil {
		c.unavailable(w, r, id, "the alert's history", err)
		return
	}
	if !a.FiredAt.IsZero() {
		if d.Audit, err = c.o.Actions.Audit(ctx, action.AuditQuery{AlertID: a.ID(), Limit: 100}); err != nil {
			c.unavailable(w, r, id, "the alert's actions", err)
			return
		}
	}
	m := url.Values{"detector": {a.Detector}}
	if a.KeyID != "" {
		m.Set("key_id", a.KeyID)
	}
	if a.ClientID != "" {
		m.Set("client_id", a.ClientID)
	}
	d.SilenceLink = "/console/silences?" + m.Encode()
	c.render(w, http.StatusOK, "alert", id, a.Summary, d)
}

type rotationsData struct {
	Running, Finished []readapi.Rotation
}

// rotations serves the rotations in flight, and those finished lately.
func (c *Console) rotations(w http.ResponseWriter, r *http.Request, id identity) {
	all, err := c.o.Resources.RotationList(r.Context(), 200)
	if err != nil {
		c.unavailable(w, r, id, "the rotations", err)
		return
	}
	var d rotationsData
	for _, rot := range all {
		if rot.State == "running" {
			d.Running = append(d.Running, rot)
		} else {
			d.Finished = append(d.Finished, rot)
		}
	}
	c.render(w, http.StatusOK, "rotations", id, "Rotations", d)
}

type rotationData struct {
	Rotation readapi.RotationDetail
	Chart    chart
}

// rotation serves one rotation: its deadline, readiness, burn-down and stragglers.
func (c *Console) rotation(w http.ResponseWriter, r *http.Request, id identity) {
	rid := r.URL.Query().Get("id")
	rot, err := c.o.Resources.RotationOf(r.Context(), rid)
	if err != nil {
		c.resourceFailed(w, r, id, "the rotation", err)
		return
	}
	c.render(w, http.StatusOK, "rotation", id, "Rotation "+rot.ID, rotationData{Rotation: rot, Chart: burnDownChart(rot.BurnDown)})
}

// key serves one key: its state, rotation, callers, networks and countries.
func (c *Console) key(w http.ResponseWriter, r *http.Request, id identity) {
	k, err := c.o.Resources.KeyOf(r.Context(), r.PathValue("id"))
	if err != nil {
		c.resourceFailed(w, r, id, "the key", err)
		return
	}
	c.render(w, http.StatusOK, "key", id, "Key "+k.KeyID, k)
}

// resourceFailed answers a failed read of a key or rotation: 404 for one keywatch does not know,
// 400 for an id that cannot be one, 503 when the read failed.
func (c *Console) resourceFailed(w http.ResponseWriter, r *http.Request, id identity, what string, err error) {
	switch {
	case errors.Is(err, readapi.ErrNotFound):
		c.fail(w, id, http.StatusNotFound, err.Error())
	case errors.Is(err, readapi.ErrBadRequest):
		c.fail(w, id, http.StatusBadRequest, err.Error())
	default:
		c.unavailable(w, r, id, what, err)
	}
}

type silencesData struct {
	Silences []alerting.Silence
	// Form is the create form's values: prefilled from an alert, or as sent when refused.
	Form silenceForm
}

type silenceForm struct {
	Matchers, Duration, Comment string
}

// silences serves the silences and the form that creates one, prefilled from the query
// (detector, key_id, client_id) when an alert's page links here.
func (c *Console) silences(w http.ResponseWriter, r *http.Request, id identity) {
	q := r.URL.Query()
	var lines []string
	for _, name := range []string{"detector", "key_id", "client_id", "rotation_id", "severity"} {
		if v := q.Get(name); v != "" && !strings.ContainsAny(v, "\r\n") {
			lines = append(lines, name+"="+cut(v, 200))
		}
	}
	c.showSilences(w, r, id, http.StatusOK, silenceForm{Matchers: strings.Join(lines, "\n"), Duration: "2h"})
}

func (c *Console) showSilences(w http.ResponseWriter, r *http.Request, id identity, code int, form silenceForm, outcome ...string) {
	all, err := c.o.Silences.List(r.Context())
	if err != nil {
		c.unavailable(w, r, id, "the silences", err)
		return
	}
	c.render(w, code, "silences", id, "Silences", silencesData{Silences: all, Form: form}, outcome...)
}

// createSilence creates a silence from the form; its creator is the signed-in person.
func (c *Console) createSilence(w http.ResponseWriter, r *http.Request, id identity) {
	form := silenceForm{Matchers: r.PostFormValue("matchers"), Duration: strings.TrimSpace(r.PostFormValue("duration")), Comment: strings.TrimSpace(r.PostFormValue("comment"))}
	if !id.canSilence() {
		c.reject(r, id, "scope_too_low")
		c.showSilences(w, r, id, http.StatusForbidden, form, "", "Refused: a "+id.Scope.String()+" token may not create silences; sign in with the write or admin token.")
		return
	}
	in := alerting.NewSilence{CreatedBy: "console:" + id.ID, Comment: form.Comment}
	var problems []string
	in.Matchers = map[string]string{}
	for i, line := range strings.Split(form.Matchers, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			problems = append(problems, fmt.Sprintf("matchers line %d: %q: want label=value", i+1, cut(line, 80)))
			continue
		}
		in.Matchers[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	d, err := time.ParseDuration(form.Duration)
	if err != nil || d <= 0 {
		problems = append(problems, fmt.Sprintf("duration: %q: want a length such as 30m, 2h or 24h", cut(form.Duration, 40)))
	}
	in.Duration = d
	if len(problems) > 0 {
		c.showSilences(w, r, id, http.StatusBadRequest, form, "", strings.Join(problems, "; "))
		return
	}
	s, err := c.o.Silences.Create(r.Context(), in)
	if err != nil {
		c.showSilences(w, r, id, http.StatusBadRequest, form, "", "The silence was not created: "+err.Error())
		return
	}
	c.o.Log.Info("console: silence created", "silence", s.ID, "by", id.ID)
	c.showSilences(w, r, id, http.StatusOK, silenceForm{Duration: "2h"}, fmt.Sprintf("Silence %s created: it ends %s.", s.ID, s.EndsAt.UTC().Format("2006-01-02 15:04 UTC")))
}

// expireSilence ends a silence now.
func (c *Console) expireSilence(w http.ResponseWriter, r *http.Request, id identity) {
	sid := r.PathValue("id")
	form := silenceForm{Duration: "2h"}
	if !id.canSilence() {
		c.reject(r, id, "scope_too_low")
		c.showSilences(w, r, id, http.StatusForbidden, form, "", "Refused: a "+id.Scope.String()+" token may not expire silences.")
		return
	}
	_, err := c.o.Silences.Expire(r.Context(), sid, "console:"+id.ID)
	switch {
	case errors.Is(err, alerting.ErrNoSilence), errors.Is(err, alerting.ErrConfigSilence):
		c.showSilences(w, r, id, http.StatusBadRequest, form, "", err.Error())
	case err != nil:
		c.unavailable(w, r, id, "the silences", err)
	default:
		c.showSilences(w, r, id, http.StatusOK, form, "Silence "+sid+" expired.")
	}
}

type actionsData struct {
	Pending []action.Pending
	Audit   []action.AuditEntry
	Key     string
}

// actions serves the actions awaiting approval and the audit, searchable by key.
func (c *Console) actions(w http.ResponseWriter, r *http.Request, id identity) {
	c.showActions(w, r, id, http.StatusOK)
}

func (c *Console) showActions(w http.ResponseWriter, r *http.Request, id identity, code int, outcome ...string) {
	ctx := r.Context()
	d := actionsData{Key: cut(strings.TrimSpace(r.URL.Query().Get("key")), 200)}
	var err error
	if d.Pending, err = c.o.Actions.Pending(ctx); err != nil {
		c.unavailable(w, r, id, "the pending actions", err)
		return
	}
	if d.Audit, err = c.o.Actions.Audit(ctx, action.AuditQuery{KeyID: d.Key, Limit: 200}); err != nil {
		c.unavailable(w, r, id, "the action audit", err)
		return
	}
	c.render(w, code, "actions", id, "Actions", d, outcome...)
}

// approveAction approves a pending action as the signed-in person, if they are an approver.
func (c *Console) approveAction(w http.ResponseWriter, r *http.Request, id identity) {
	c.decide(w, r, id, "approve", func() (string, error) {
		return c.o.Actions.Approve(r.Context(), r.PathValue("id"), id.person())
	})
}

// refuseAction refuses a pending action as the signed-in person, if they are an approver.
func (c *Console) refuseAction(w http.ResponseWriter, r *http.Request, id identity) {
	reason := cut(strings.TrimSpace(r.PostFormValue("reason")), 500)
	c.decide(w, r, id, "refuse", func() (string, error) {
		return c.o.Actions.Refuse(r.Context(), r.PathValue("id"), id.person(), reason)
	})
}

func (c *Console) decide(w http.ResponseWriter, r *http.Request, id identity, verb string, do func() (string, error)) {
	if !id.Approver {
		c.reject(r, id, "not_an_approver")
		msg := "Refused: only approvers may " + verb + " actions (console.approvers, or the admin token)."
		c.showActions(w, r, id, http.StatusForbidden, "", msg)
		return
	}
	text, err := do()
	if err != nil {
		c.showActions(w, r, id, http.StatusConflict, "", "Nothing done: "+err.Error())
		return
	}
	c.showActions(w, r, id, http.StatusOK, text)
}
