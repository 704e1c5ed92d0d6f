package config

import (
	"fmt"
	"net"
	"os"
	"slices"
	"time"
)

// SASL mechanisms keywatch speaks to the brokers (kafka.sasl.mechanism).
const (
	SASLNone        = "none"
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
	SASLAWSMSKIAM   = "aws-msk-iam"
)

var saslMechanisms = []string{SASLNone, SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLAWSMSKIAM}

func (k Kafka) validateSecurity() []error {
	errs := k.TLS.TLS.validate("kafka.tls", k.TLS.Enabled, "kafka.tls.enabled")
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	s := k.SASL
	switch s.Mechanism {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.Username == "" {
			bad("kafka.sasl.username", "required with kafka.sasl.mechanism %s", s.Mechanism)
		}
		if s.Password == "" {
			bad("kafka.sasl.password", "required with kafka.sasl.mechanism %s: set %s or kafka.sasl.password_file", s.Mechanism, envName("kafka.sasl.password"))
		}
	case SASLAWSMSKIAM:
		if s.Username != "" || s.Password != "" {
			bad("kafka.sasl.username", "aws-msk-iam takes no username or password: credentials come from the AWS default chain")
		}
		if !k.TLS.Enabled {
			bad("kafka.tls.enabled", "aws-msk-iam needs TLS: MSK serves IAM authentication only on its TLS listener (port 9098)")
		}
	case SASLNone:
		if s.Username != "" || s.Password != "" {
			bad("kafka.sasl.mechanism", "none, but kafka.sasl.username or password is set: name the mechanism (plain, scram-sha-256, scram-sha-512)")
		}
	default:
		bad("kafka.sasl.mechanism", "%q: want one of %v", s.Mechanism, saslMechanisms)
	}
	if s.Mechanism != SASLAWSMSKIAM && s.AWSRegion != "" {
		bad("kafka.sasl.aws_region", "only used with kafka.sasl.mechanism aws-msk-iam")
	}
	return errs
}

// validate checks the client TLS settings at path; on says whether TLS is switched on (by the
// setting named onPath).
func (t TLS) validate(path string, on bool, onPath string) []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, key, fmt.Sprintf(format, args...)))
	}
	if !on {
		if t != (TLS{}) {
			errs = append(errs, fmt.Errorf("%s: TLS settings are given but %s is false", path, onPath))
		}
		return errs
	}
	for key, file := range map[string]string{"ca_file": t.CAFile, "cert_file": t.CertFile, "key_file": t.KeyFile} {
		if file == "" {
			continue
		}
		if _, err := os.Stat(file); err != nil {
			bad(key, "%v", err)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("cert_file", "cert_file and key_file go together (a client certificate needs its key)")
	}
	if !slices.Contains([]string{"", "1.2", "1.3"}, t.MinVersion) {
		bad("min_version", "%q: want 1.2 or 1.3", t.MinVersion)
	}
	if t.InsecureSkipVerify && t.CAFile != "" {
		bad("insecure_skip_verify", "true makes ca_file pointless: the server's certificate is not verified at all")
	}
	return errs
}

func (h HTTP) validate() []error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	for path, addr := range map[string]string{"http.listen": h.Listen, "http.admin_listen": h.AdminListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(path, "%q: %v", addr, err)
		}
	}
	if h.AdminListen != "" && h.AdminListen == h.Listen {
		bad("http.admin_listen", "%q is also http.listen: give the admin listener its own port, or leave it empty", h.AdminListen)
	}
	if h.ReadTimeout < Duration(time.Second) || h.ReadTimeout > Duration(5*time.Minute) {
		bad("http.read_timeout", "%s: want 1s to 5m", h.ReadTimeout)
	}
	if h.IdleTimeout < Duration(time.Second) || h.IdleTimeout > Duration(time.Hour) {
		bad("http.idle_timeout", "%s: want 1s to 1h", h.IdleTimeout)
	}
	if h.MaxConnections < 16 || h.MaxConnections > 1_000_000 {
		bad("http.max_connections", "%d: want 16 to 1000000", h.MaxConnections)
	}
	tokens := map[string]string{"http.token": h.Token, "http.write_token": h.WriteToken, "http.read_token": h.ReadToken}
	seen := map[string]string{}
	for _, path := range []string{"http.token", "http.write_token", "http.read_token"} {
		tok := tokens[path]
		if tok == "" {
			continue
		}
		errs = append(errs, secretLength(path, tok)...)
		if other, dup := seen[tok]; dup {
			bad(path, "is the same as %s: each scope needs its own token", other)
		}
		seen[tok] = path
	}
	return append(errs, h.TLS.validate()...)
}

// secretLength refuses a bearer token or signing secret shorter than MinSecretLength; the error
// names the setting, not the value.
func secretLength(path, secret string) []error {
	if secret == "" || len(secret) >= MinSecretLength {
		return nil
	}
	return []error{fmt.Errorf("%s: %d characters, want at least %d (e.g. openssl rand -hex 16); set %s or %s_file",
		path, len(secret), MinSecretLength, envName(path), path)}
}

func (t ServerTLS) validate() []error {
	var errs []error
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, fmt.Errorf("http.tls.cert_file: cert_file and key_file go together"))
	}
	for key, file := range map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile} {
		if file == "" {
			continue
		}
		if _, err := os.Stat(file); err != nil {
			errs = append(errs, fmt.Errorf("http.tls.%s: %v", key, err))
		}
	}
	return errs
}

// Enabled says whether the listener serves HTTPS.
func (t ServerTLS) Enabled() bool { return t.CertFile != "" }
