package config

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Alerting turns findings into alerts: pending for alerting.for, firing, resolved after
// alerting.resolve_after without the finding; grouped per rotation or key and routed to channels.
type Alerting struct {
	EvaluateInterval Duration            `yaml:"evaluate_interval" help:"how often findings are turned into alert states and notifications"`
	For              map[string]Duration `yaml:"for" help:"per detector (or default): how long a finding must persist before its alert fires (YAML only)"`
	ResolveAfter     map[string]Duration `yaml:"resolve_after" help:"per detector (or default): how long successful runs must not find it before the alert resolves (YAML only)"`
	GroupWait        Duration            `yaml:"group_wait" help:"a new group waits this long for more alerts before its first notification"`
	GroupInterval    Duration            `yaml:"group_interval" help:"a changed group is notified again at most this often"`
	RepeatInterval   Duration            `yaml:"repeat_interval" help:"an unchanged firing group is reminded of this often"`
	DegradedAfter    int                 `yaml:"degraded_after" help:"this many failed runs of a detector in a row raise a detection_degraded alert"`
	Inhibit          []InhibitRule       `yaml:"inhibit" help:"while a source alert fires, target alerts with equal labels are muted (YAML only)"`
	Silences         []Silence           `yaml:"silences" help:"silences from the file; more come through /v1/silences (YAML only)"`
	// SilenceMaxDuration bounds every silence, the file's and those of /v1/silences.
	SilenceMaxDuration Duration `yaml:"silence_max_duration" help:"a silence ends at most this long after it starts; a longer one is refused"`
}

// DefaultSilenceMaxDuration is alerting.silence_max_duration's default: 30 days, long enough to
// cover a client's move off an old key or a planned maintenance, short enough that a forgotten
// silence ends within the month. A longer need is renewed, or is a change of the detectors'
// settings or routes rather than a silence.
const DefaultSilenceMaxDuration = Duration(30 * 24 * time.Hour)

// LatestSilenceTime bounds a silence's times: ClickHouse stores later ones, but they cannot be
// read back into a time.Time (nanoseconds since 1970 overflow an int64 in 2262).
var LatestSilenceTime = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)

// Matcher is the map form of label matchers (package label): label → glob, each label="glob",
// selecting alerts by detector, severity, key_id, client_id, rotation_id. Each value is a glob
// (package glob: * matches any run of characters, "/" included, ? one character, \ escapes; no
// [...] classes); every label given must match.
type Matcher map[string]string

// InhibitRule mutes target alerts while a source alert fires, when the labels in Equal agree.
// Source and SourceMatchers select the source alerts (every matcher of both must match), Target
// and TargetMatchers the targets.
type InhibitRule struct {
	Source Matcher `yaml:"source"`
	Target Matcher `yaml:"target"`
	// SourceMatchers and TargetMatchers are label matchers in the string form (package label):
	// detector=~"leak.*".
	SourceMatchers []string `yaml:"source_matchers,omitempty"`
	TargetMatchers []string `yaml:"target_matchers,omitempty"`
	Equal          []string `yaml:"equal"`

	source, target *compiled // SourceSelector, TargetSelector
}

// Silence mutes the alerts it matches between StartsAt (default: now) and EndsAt.
type Silence struct {
	Matchers  Matcher   `yaml:"matchers"`
	StartsAt  time.Time `yaml:"starts_at"`
	EndsAt    time.Time `yaml:"ends_at"`
	CreatedBy string    `yaml:"created_by"`
	Comment   string    `yaml:"comment"`

	selector *compiled // Selector
}

// MatcherLabels are the labels a selector may name, in every form (selector.go): a finding's
// identity, and the labels detectors add (step: the rotation step a spike follows; signals: what a
// leak finding saw, e.g. "new_network,fanout").
var MatcherLabels = []string{"detector", "severity", "key_id", "client_id", "rotation_id", "step", "signals"}

// Slack posts notifications through the Slack Web API and takes button clicks at
// POST /slack/interactions.
type Slack struct {
	Token             string       `yaml:"token" secret:"true"`
	TokenFile         string       `yaml:"token_file" help:"file holding the bot token (xoxb-...); without a token notifications are kept in the outbox and logged"`
	SigningSecret     string       `yaml:"signing_secret" secret:"true"`
	SigningSecretFile string       `yaml:"signing_secret_file" help:"file holding the signing secret that interactions are verified with"`
	APIURL            string       `yaml:"api_url" help:"Slack Web API base URL, ending in /"`
	DefaultChannel    string       `yaml:"default_channel" help:"channel for groups no route matches; empty: such groups are not sent"`
	Routes            []SlackRoute `yaml:"routes" help:"first matching route wins unless it says continue (YAML only)"`
	Approvers         []string     `yaml:"approvers" help:"Slack user ids allowed to press Revoke now"`
	MinInterval       Duration     `yaml:"min_interval" help:"at most one message per channel this often (Slack allows about 1/s)"`
	GrafanaURL        string       `yaml:"grafana_url" help:"base URL of the keywatch dashboards, linked from every message; empty: no link"`
	RunbookURL        string       `yaml:"runbook_url" help:"runbook linked from every message; empty: no link"`
}

// SlackRoute sends groups whose alerts match to Channel: the group's severity is one of Severity,
// one of its alerts' detectors matches a Detector glob, its client a Client glob, and every one of
// Matchers matches. Empty lists match anything.
type SlackRoute struct {
	Channel  string   `yaml:"channel"`
	Severity []string `yaml:"severity"`
	Detector []string `yaml:"detector"`
	Client   []string `yaml:"client" help:"globs"`
	// Matchers are label matchers in the string form (package label): client_id=~"acme-.*".
	Matchers []string `yaml:"matchers,omitempty"`
	Continue bool     `yaml:"continue"`

	selector *compiled // Selector
}

// Revoke sends emergency revokes through a signed webhook (contract 3.3), under policies and
// guardrails.
type Revoke struct {
	WebhookURL        string         `yaml:"webhook_url" help:"where revokes are POSTed; empty: decisions are audited, nothing is sent"`
	WebhookSecret     string         `yaml:"webhook_secret" secret:"true"`
	WebhookSecretFile string         `yaml:"webhook_secret_file" help:"file holding the Standard Webhooks secret (whsec_<base64>)"`
	Timeout           Duration       `yaml:"timeout" help:"each webhook attempt gives up after this long"`
	RetryFor          Duration       `yaml:"retry_for" help:"5xx, 429 and network errors are retried with backoff for this long, across restarts"`
	DefaultMode       string         `yaml:"default_mode" help:"policy where none matches: off, dry-run, approve or auto"`
	Policies          []RevokePolicy `yaml:"policies" help:"first match by detector and key pattern wins (YAML only)"`
	ProtectedKeys     []string       `yaml:"protected_keys" help:"key id globs that are never revoked"`
	MaxPerHour        int            `yaml:"max_per_hour" help:"revokes sent in any hour, at most"`
	MinScore          float64        `yaml:"min_score" help:"alerts scoring lower are never revoked, whatever the mode (dry-run says so)"`

	protected *compiled // Protected
}

// RevokePolicy says what happens to firing alerts of Detector on keys matching Keys that every
// one of Matchers matches.
type RevokePolicy struct {
	Detector string `yaml:"detector" help:"detector name or glob; empty: any"`
	Keys     string `yaml:"keys" help:"key id glob; empty: any"`
	// Matchers are label matchers in the string form (package label): severity="critical".
	Matchers []string `yaml:"matchers,omitempty" help:"label matchers, e.g. severity=\"critical\"; every one must match"`
	Mode     string   `yaml:"mode" help:"off, dry-run, approve or auto"`
	MinScore float64  `yaml:"min_score" help:"alerts under this policy need at least this score (and revoke.min_score)"`

	selector *compiled // Selector
}

// RevokeModes are the policy modes.
var RevokeModes = []string{"off", "dry-run", "approve", "auto"}

// LeakReports takes reports of leaked secrets at POST /v1/leaks: GitHub's secret scanning
// partner format signed with ECDSA, or a bearer-token form.
type LeakReports struct {
	Token        string   `yaml:"token" secret:"true"`
	TokenFile    string   `yaml:"token_file" help:"file holding the bearer token of the simple form; empty: only signed reports"`
	GitHubKeys   []string `yaml:"github_keys" help:"PEM files of the ECDSA P-256 public keys reports are verified with"`
	GitHubKeyIDs []string `yaml:"github_key_ids" help:"the key identifier (Github-Public-Key-Identifier) of each file in github_keys, in order"`
	// GitHubKeysURL is GitHub's meta endpoint of its secret scanning keys; the static files are
	// the offline fallback.
	GitHubKeysURL string `yaml:"github_keys_url" help:"where GitHub publishes the keys reports are signed with (https://api.github.com/meta/public_keys/secret_scanning), fetched when first needed, on an unknown key id (at most every 5m) and hourly; empty: only github_keys"`
}

func defaultAlerting() Alerting {
	return Alerting{
		EvaluateInterval: Duration(15 * time.Second),
		For:              map[string]Duration{"default": 0, "lingering": Duration(10 * time.Minute), "hygiene": 0},
		ResolveAfter:     map[string]Duration{"default": Duration(time.Hour), "lingering": Duration(6 * time.Hour), "hygiene": Duration(48 * time.Hour), "leak_report": Duration(7 * 24 * time.Hour)},
		GroupWait:        Duration(30 * time.Second),
		GroupInterval:    Duration(5 * time.Minute),
		RepeatInterval:   Duration(4 * time.Hour),
		DegradedAfter:    3,
		Inhibit: []InhibitRule{
			// A key that leaks is revoked or rotated at once: nudging its clients to move off it in
			// the meantime is noise.
			{Source: Matcher{"detector": "leak*", "severity": "critical"}, Target: Matcher{"detector": "lingering"}, Equal: []string{"key_id"}},
		},
		SilenceMaxDuration: DefaultSilenceMaxDuration,
	}
}

func defaultSlack() Slack {
	return Slack{APIURL: "https://slack.com/api/", MinInterval: Duration(time.Second)}
}

func defaultRevoke() Revoke {
	return Revoke{
		Timeout: Duration(10 * time.Second), RetryFor: Duration(time.Hour),
		DefaultMode: "off",
		Policies:    []RevokePolicy{{Detector: "leak*", Mode: "dry-run"}},
		MaxPerHour:  3, MinScore: 100,
	}
}

func (a Alerting) validate() []error {
	var errs []error
	bad := func(path string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if a.EvaluateInterval < Duration(time.Second) {
		bad("alerting.evaluate_interval", "%s: want at least 1s", a.EvaluateInterval)
	}
	for name, m := range map[string]map[string]Duration{"alerting.for": a.For, "alerting.resolve_after": a.ResolveAfter} {
		for det, d := range m {
			if d < 0 {
				bad(name+"."+det, "%s: must not be negative", d)
			}
		}
	}
	if a.GroupWait < 0 || a.GroupInterval < Duration(time.Second) || a.RepeatInterval < a.GroupInterval {
		bad("alerting.group_interval", "want group_wait >= 0, group_interval >= 1s and repeat_interval >= group_interval (%s, %s, %s)", a.GroupWait, a.GroupInterval, a.RepeatInterval)
	}
	if a.DegradedAfter < 1 {
		bad("alerting.degraded_after", "%d: want at least 1", a.DegradedAfter)
	}
	for i, r := range a.Inhibit { // what Source and Target select is checked by compileSelectors
		for _, l := range r.Equal {
			if !contains(MatcherLabels, l) {
				bad(fmt.Sprintf("alerting.inhibit[%d].equal", i), "%q: want one of %s", l, strings.Join(MatcherLabels, ", "))
			}
		}
	}
	if a.SilenceMaxDuration <= 0 {
		bad("alerting.silence_max_duration", "%s: want a positive duration such as 720h (30 days)", a.SilenceMaxDuration)
	}
	now := time.Now()
	for i, s := range a.Silences {
		prefix := fmt.Sprintf("alerting.silences[%d].", i)
		errs = append(errs, s.Validate(prefix)...)
		if a.SilenceMaxDuration > 0 && s.TooLong(now, a.SilenceMaxDuration) {
			from := "starts_at " + s.StartsAt.UTC().Format(time.RFC3339Nano)
			if s.StartsAt.IsZero() {
				from = "now (it has no starts_at)"
			}
			bad(prefix+"ends_at", "%s is more than alerting.silence_max_duration (%s) after %s: end it sooner, or raise the limit",
				s.EndsAt.UTC().Format(time.RFC3339Nano), a.SilenceMaxDuration, from)
		}
	}
	return errs
}

// TooLong reports whether s lasts longer than max: from StartsAt (now when it has none) to EndsAt.
func (s Silence) TooLong(now time.Time, max Duration) bool {
	start := s.StartsAt
	if start.IsZero() {
		start = now
	}
	return s.EndsAt.After(start.Add(time.Duration(max))) // not EndsAt.Sub: it saturates at 292 years
}

// Validate checks a silence from the file or from POST /v1/silences alike; each error starts with
// prefix and the field's name (e.g. "matchers.key_id").
func (s Silence) Validate(prefix string) []error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", prefix, field, fmt.Sprintf(format, args...)))
	}
	if len(s.Matchers) == 0 {
		bad("matchers", "a silence needs at least one matcher")
	} else if s.Matchers.matchesEverything() {
		bad("matchers", "%s matches every alert: give at least one label that is not * (e.g. key_id or detector)", s.Matchers.text())
	}
	_, wrong := s.Matchers.compile(prefix + "matchers")
	errs = append(errs, wrong...)
	if s.EndsAt.IsZero() || (!s.StartsAt.IsZero() && !s.EndsAt.After(s.StartsAt)) {
		bad("ends_at", "want an RFC 3339 time after starts_at")
	}
	for field, t := range map[string]time.Time{"starts_at": s.StartsAt, "ends_at": s.EndsAt} {
		if !t.Before(LatestSilenceTime) {
			bad(field, "%s: want a time before %s", t.UTC().Format(time.RFC3339Nano), LatestSilenceTime.Format(time.DateOnly))
		}
	}
	if s.CreatedBy == "" {
		bad("created_by", "required: who made the silence")
	}
	if s.Comment == "" {
		bad("comment", "required: why the alerts are silenced")
	}
	return errs
}

// matchesEverything reports whether every glob of m is made of * alone, so that m selects every
// alert.
func (m Matcher) matchesEverything() bool {
	for _, glob := range m {
		if strings.Trim(glob, "*") != "" || glob == "" {
			return false
		}
	}
	return true
}

// text writes m as label: glob pairs in label order, for messages.
func (m Matcher) text() string {
	labels := make([]string, 0, len(m))
	for l := range m {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	for i, l := range labels {
		labels[i] = l + ": " + strconv.Quote(m[l])
	}
	return "{" + strings.Join(labels, ", ") + "}"
}

func (s Slack) validate() []error {
	errs := secretLength("slack.signing_secret", s.SigningSecret)
	bad := func(path string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if u, err := url.Parse(s.APIURL); err != nil || u.Scheme == "" || u.Host == "" || !strings.HasSuffix(s.APIURL, "/") {
		bad("slack.api_url", "%q: want an absolute URL ending in /", s.APIURL)
	}
	for i, r := range s.Routes {
		p := fmt.Sprintf("slack.routes[%d]", i)
		if r.Channel == "" { // what the route selects is checked by compileSelectors
			bad(p+".channel", "must not be empty")
		}
	}
	if s.MinInterval < 0 {
		bad("slack.min_interval", "%s: must not be negative", s.MinInterval)
	}
	for path, v := range map[string]string{"slack.grafana_url": s.GrafanaURL, "slack.runbook_url": s.RunbookURL} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || u.Scheme == "" || u.Host == "" {
			bad(path, "%q: want an absolute URL", v)
		}
	}
	return errs
}

func (r Revoke) validate() []error {
	var errs []error
	bad := func(path string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if r.WebhookURL != "" {
		if u, err := url.Parse(r.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("revoke.webhook_url", "%q: want an http(s) URL", r.WebhookURL)
		}
		if !strings.HasPrefix(r.WebhookSecret, "whsec_") || len(r.WebhookSecret) < len("whsec_")+24 {
			bad("revoke.webhook_secret", "with revoke.webhook_url set, %s or revoke.webhook_secret_file must hold a Standard Webhooks secret: whsec_ and at least 18 base64-encoded bytes", envName("revoke.webhook_secret"))
		}
	}
	if r.Timeout < Duration(100*time.Millisecond) {
		bad("revoke.timeout", "%s: want at least 100ms", r.Timeout)
	}
	if r.RetryFor < 0 {
		bad("revoke.retry_for", "%s: must not be negative", r.RetryFor)
	}
	if !contains(RevokeModes, r.DefaultMode) {
		bad("revoke.default_mode", "%q: want one of %s", r.DefaultMode, strings.Join(RevokeModes, ", "))
	}
	for i, p := range r.Policies {
		if !contains(RevokeModes, p.Mode) {
			bad(fmt.Sprintf("revoke.policies[%d].mode", i), "%q: want one of %s", p.Mode, strings.Join(RevokeModes, ", "))
		}
	} // what policies select, and protected_keys, are checked by compileSelectors
	if r.MaxPerHour < 0 {
		bad("revoke.max_per_hour", "%d: must not be negative (0 sends none)", r.MaxPerHour)
	}
	return errs
}

func (l LeakReports) validate() []error {
	errs := secretLength("leak_reports.token", l.Token)
	if len(l.GitHubKeyIDs) != len(l.GitHubKeys) {
		errs = append(errs, fmt.Errorf("leak_reports.github_key_ids: %d ids for %d files in leak_reports.github_keys; give one id per file", len(l.GitHubKeyIDs), len(l.GitHubKeys)))
	}
	if l.GitHubKeysURL != "" {
		if u, err := url.Parse(l.GitHubKeysURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("leak_reports.github_keys_url: %q: want an http(s) URL such as https://api.github.com/meta/public_keys/secret_scanning", l.GitHubKeysURL))
		}
	}
	for i, file := range l.GitHubKeys { // their content is checked when the daemon loads them
		if _, err := os.Stat(file); err != nil {
			errs = append(errs, fmt.Errorf("leak_reports.github_keys[%d]: %v", i, err))
		}
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
