package config

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/keywatch/keywatch/internal/glob"
)

// Webhook is one endpoint of the signed notification webhooks (Standard Webhooks): the events it
// receives are posted to its URL, signed with its own secret.
type Webhook struct {
	Name       string   `yaml:"name" help:"the endpoint's identifier: letters, digits and _; it names its deliveries and metrics"`
	URL        string   `yaml:"url" help:"where events are POSTed, http(s)"`
	SecretFile string   `yaml:"secret_file" help:"file holding the endpoint's Standard Webhooks secret (whsec_<base64>); required"`
	Secret     string   `yaml:"-"` // read from SecretFile, never from the YAML file
	Events     []string `yaml:"events" help:"event types (or globs, e.g. alert.*) the endpoint receives; empty: every event"`
	Timeout    Duration `yaml:"timeout" help:"how long one delivery attempt may take; 0s: 10s"`
	MaxAge     Duration `yaml:"max_age" help:"an event not delivered this long after it was published fails; 0s: 24h"`
}

// The defaults of an endpoint's timeout and max_age, for the zero values.
const (
	DefaultWebhookTimeout = 10 * time.Second
	DefaultWebhookMaxAge  = 24 * time.Hour
)

// AttemptTimeout is the endpoint's timeout, or its default.
func (w Webhook) AttemptTimeout() time.Duration {
	if w.Timeout > 0 {
		return time.Duration(w.Timeout)
	}
	return DefaultWebhookTimeout
}

// DeliveryMaxAge is the endpoint's max_age, or its default.
func (w Webhook) DeliveryMaxAge() time.Duration {
	if w.MaxAge > 0 {
		return time.Duration(w.MaxAge)
	}
	return DefaultWebhookMaxAge
}

func validateWebhooks(ws []Webhook) []error {
	var errs []error
	bad := func(path string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	names := map[string]int{}
	for i, w := range ws {
		p := fmt.Sprintf("webhooks[%d]", i)
		switch j, dup := names[w.Name]; {
		case !identifier.MatchString(w.Name):
			bad(p+".name", "%q: want letters, digits and _, not starting with a digit", w.Name)
		case dup:
			bad(p+".name", "%q: webhooks[%d] has the same name", w.Name, j)
		default:
			names[w.Name] = i
		}
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(p+".url", "%q: want an http(s) URL", w.URL)
		}
		switch {
		case w.SecretFile == "":
			bad(p+".secret_file", "required: a file holding the endpoint's Standard Webhooks secret (whsec_<base64>)")
		case !validWebhookSecret(w.Secret):
			bad(p+".secret_file", "%s does not hold a Standard Webhooks secret: whsec_ and at least 18 base64-encoded bytes", w.SecretFile)
		}
		for k, e := range w.Events {
			if err := glob.Valid(e); err != nil || e == "" {
				bad(fmt.Sprintf("%s.events[%d]", p, k), "%q: want an event type or a glob of them", e)
			}
		}
		if w.Timeout < 0 {
			bad(p+".timeout", "%s: must not be negative", w.Timeout)
		}
		if w.MaxAge < 0 {
			bad(p+".max_age", "%s: must not be negative", w.MaxAge)
		}
	}
	return errs
}

// validWebhookSecret: whsec_ and at least 18 base64-encoded bytes.
func validWebhookSecret(s string) bool {
	b64, ok := strings.CutPrefix(s, "whsec_")
	key, err := base64.StdEncoding.DecodeString(b64)
	return ok && err == nil && len(key) >= 18
}
