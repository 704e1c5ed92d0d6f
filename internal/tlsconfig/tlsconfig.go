// Package tlsconfig owns turning keywatch's TLS settings into crypto/tls configurations: the
// client side for ClickHouse and Kafka (CA, client certificate, server name, minimum version)
// and the HTTP listener's certificate, read again when its files change. It does not dial or
// listen, and it does not own which connections use TLS (that is the configuration's choice).
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/keywatch/keywatch/internal/config"
)

// Client returns the client configuration t describes; path is where t sits in the
// configuration (clickhouse.tls), so that every error names the setting at fault.
func Client(t config.TLS, path string) (*tls.Config, error) {
	c := &tls.Config{
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // the user's explicit choice, warned about at start
		MinVersion:         tls.VersionTLS12,
	}
	switch t.MinVersion {
	case "", "1.2":
	case "1.3":
		c.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("%s.min_version: %q: want 1.2 or 1.3", path, t.MinVersion)
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", path, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.ca_file: %s: no certificates found", path, t.CAFile)
		}
	}
	if t.CertFile != "" || t.KeyFile != "" {
		if t.CertFile == "" || t.KeyFile == "" {
			return nil, fmt.Errorf("%s.cert_file, %s.key_file: a client certificate needs both", path, path)
		}
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.cert_file, %s.key_file: %s, %s: %w", path, path, t.CertFile, t.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Warnings are what a client configuration gives up on, to be logged loudly at start.
func Warnings(t config.TLS, path string) []string {
	if t.InsecureSkipVerify {
		return []string{path + ".insecure_skip_verify is true: certificate verification is OFF, so anyone between keywatch and the server can read and change the traffic, credentials included"}
	}
	return nil
}
