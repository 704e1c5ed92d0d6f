package tlsconfig

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// recheckEvery bounds how often a handshake makes the listener look at its files again, so that
// callers cannot make it read the disk more often than this.
const recheckEvery = time.Second

// Certificate is a server certificate read from a PEM certificate file and its key file, and
// read again when either file changes (a renewed certificate, a Kubernetes Secret updated in
// place), with no restart. A change that does not load (a half-written file, a key that does
// not match) is logged and the certificate in use stays.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     fileStamp
	checkedAt time.Time
}

type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// LoadCertificate reads the certificate at certFile and its key at keyFile; the paths name
// the settings (http.tls.cert_file) in errors.
func LoadCertificate(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: log}
	stamp, err := c.stat()
	if err != nil {
		return nil, err
	}
	if err := c.load(stamp); err != nil {
		return nil, err
	}
	c.checkedAt = time.Now()
	return c, nil
}

// ServerConfig returns a server configuration that serves the current certificate.
func (c *Certificate) ServerConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}
}

func (c *Certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checkedAt) >= recheckEvery {
		c.checkedAt = time.Now()
		c.reloadIfChanged()
	}
	return c.cert, nil
}

// Reload reads the files again now if they changed (SIGHUP, POST /-/reload).
func (c *Certificate) Reload() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checkedAt = time.Now()
	c.reloadIfChanged()
}

func (c *Certificate) reloadIfChanged() {
	stamp, err := c.stat()
	if err != nil {
		c.log.Error("cannot read the HTTP listener's certificate files; serving the previous certificate", "err", err)
		return
	}
	if stamp == c.stamp {
		return
	}
	if err := c.load(stamp); err != nil {
		c.log.Error("the HTTP listener's new certificate files do not load; serving the previous certificate", "err", err)
		return
	}
	c.log.Info("HTTP listener certificate reloaded", "cert_file", c.certFile, "not_after", c.cert.Leaf.NotAfter)
}

func (c *Certificate) stat() (fileStamp, error) {
	cs, err := os.Stat(c.certFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("http.tls.cert_file: %w", err)
	}
	ks, err := os.Stat(c.keyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("http.tls.key_file: %w", err)
	}
	return fileStamp{certMod: cs.ModTime(), keyMod: ks.ModTime(), certSize: cs.Size(), keySize: ks.Size()}, nil
}

func (c *Certificate) load(stamp fileStamp) error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("http.tls.cert_file, http.tls.key_file: %s and %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.stamp = &cert, stamp
	return nil
}
