package config

import (
	"fmt"
	"net/url"
	"time"
)

// Alertmanager forwards alerts to Prometheus Alertmanagers (POST /api/v2/alerts), beside Slack.
type Alertmanager struct {
	URLs    []string `yaml:"urls" help:"base URLs of Alertmanagers (http://alertmanager:9093), each sent every firing and recently resolved alert; an HA pair is listed with both; empty: no forwarding"`
	Timeout Duration `yaml:"timeout" help:"a post to an Alertmanager that has not answered after this long fails and is retried"`
	// Username and Password authenticate every post with HTTP basic authentication (Alertmanager's
	// web.config.file basic_auth_users, or a proxy in front of it).
	Username     string `yaml:"username" help:"user of HTTP basic authentication to every Alertmanager; empty: none"`
	Password     string `yaml:"password" secret:"true"`
	PasswordFile string `yaml:"password_file" help:"file holding the basic-authentication password"`
}

func defaultAlertmanager() Alertmanager {
	return Alertmanager{Timeout: Duration(10 * time.Second)}
}

func (a Alertmanager) validate() []error {
	var errs []error
	seen := map[string]int{}
	for i, raw := range a.URLs {
		path := fmt.Sprintf("alertmanager.urls[%d]", i)
		u, err := url.Parse(raw)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs = append(errs, fmt.Errorf("%s: %q: want an http(s) URL such as http://alertmanager:9093", path, raw))
		case u.User != nil:
			errs = append(errs, fmt.Errorf("%s: %q: credentials do not belong in the URL", path, u.Redacted()))
		case u.RawQuery != "" || u.Fragment != "":
			errs = append(errs, fmt.Errorf("%s: %q: want a base URL without query or fragment", path, raw))
		}
		if j, dup := seen[raw]; dup {
			errs = append(errs, fmt.Errorf("%s: %q is also alertmanager.urls[%d]", path, raw, j))
		}
		seen[raw] = i
	}
	if (a.Username == "") != (a.Password == "") {
		errs = append(errs, fmt.Errorf("alertmanager.password: alertmanager.username and the password (%s or alertmanager.password_file) go together", envName("alertmanager.password")))
	}
	if a.Timeout < Duration(100*time.Millisecond) || a.Timeout > Duration(5*time.Minute) {
		errs = append(errs, fmt.Errorf("alertmanager.timeout: %s: want 100ms to 5m", a.Timeout))
	}
	return errs
}
