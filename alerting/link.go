package alerting

import (
	"net/url"
	"strconv"
	"time"
)

// DashboardLink is the Grafana deep link of an alert on the dashboards at base (slack.grafana_url):
// its key and client, from an hour before the episode began to an hour after it resolved (or now).
// It is empty when base is empty or not a URL.
func DashboardLink(base string, a Alert) string {
	if base == "" {
		return ""
	}
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	q := u.Query()
	if a.KeyID != "" {
		q.Set("var-key", a.KeyID)
	}
	if a.ClientID != "" {
		q.Set("var-client", a.ClientID)
	}
	if !a.ActiveSince.IsZero() {
		q.Set("from", strconv.FormatInt(a.ActiveSince.Add(-time.Hour).UnixMilli(), 10))
	}
	if a.ResolvedAt.IsZero() {
		q.Set("to", "now")
	} else {
		q.Set("to", strconv.FormatInt(a.ResolvedAt.Add(time.Hour).UnixMilli(), 10))
	}
	u.RawQuery = q.Encode()
	return u.String()
}
