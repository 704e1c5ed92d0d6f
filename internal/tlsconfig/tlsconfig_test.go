package tlsconfig

import (
	"crypto/tls"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/testbed"
)

func TestClientVerifiesWithTheGivenCAAndPresentsItsCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := testbed.NewCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	server, _ := ca.Server("server", "db.test")
	client, _ := ca.Client("keywatch")
	addr := listen(t, &tls.Config{
		Certificates: []tls.Certificate{server.TLS}, ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})
	dial := func(cfg config.TLS) error {
		tc, err := Client(cfg, "clickhouse.tls")
		if err != nil {
			return err
		}
		c, err := tls.Dial("tcp", addr, tc)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1)) // a refused client certificate shows on the first read (TLS 1.3)
		return err
	}
	if err := dial(config.TLS{CAFile: ca.CertFile, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "db.test", MinVersion: "1.3"}); err != nil {
		t.Fatalf("mTLS with the right CA and certificate: %v", err)
	}
	if err := dial(config.TLS{CAFile: ca.CertFile, ServerName: "db.test"}); err == nil {
		t.Error("a server that requires a client certificate accepted none")
	}
	if err := dial(config.TLS{CAFile: ca.CertFile, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "other.test"}); err == nil || !strings.Contains(err.Error(), "other.test") {
		t.Errorf("a certificate for another name: %v", err)
	}
	other, _ := testbed.NewCA(t.TempDir(), "other")
	if err := dial(config.TLS{CAFile: other.CertFile, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "db.test"}); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("a server certificate from an unknown CA: %v", err)
	}
	notPEM := dir + "/not.pem"
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	if _, err := Client(config.TLS{CAFile: notPEM}, "kafka.tls"); err == nil || !strings.HasPrefix(err.Error(), "kafka.tls.ca_file: ") {
		t.Errorf("a CA file with no certificate: %v", err)
	}
	if _, err := Client(config.TLS{CertFile: client.CertFile, KeyFile: server.KeyFile}, "kafka.tls"); err == nil || !strings.Contains(err.Error(), "kafka.tls.cert_file") {
		t.Errorf("a key that does not match: %v", err)
	}
	if w := Warnings(config.TLS{InsecureSkipVerify: true}, "clickhouse.tls"); len(w) != 1 || !strings.Contains(w[0], "clickhouse.tls.insecure_skip_verify") {
		t.Errorf("warnings: %v", w)
	}
}

func TestCertificateIsReadAgainWhenItsFilesChange(t *testing.T) {
	dir := t.TempDir()
	ca, _ := testbed.NewCA(dir, "ca")
	first, err := ca.Server("listener", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := LoadCertificate(first.CertFile, first.KeyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := listen(t, cert.ServerConfig())
	served := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool})
		if err != nil {
			return err.Error()
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	serialOf := func(i testbed.Issued) string {
		return i.TLS.Leaf.SerialNumber.String()
	}
	if got := served(); got != serialOf(first) {
		t.Fatalf("serves %s, want %s", got, serialOf(first))
	}
	// A half-written file keeps the certificate in use.
	os.WriteFile(first.CertFile, []byte("-----BEGIN CERT"), 0o600)
	cert.Reload()
	if got := served(); got != serialOf(first) {
		t.Fatalf("after a broken file: serves %s, want the previous %s", got, serialOf(first))
	}
	second, _ := ca.Server("listener", "127.0.0.1") // the same files, renewed
	deadline := time.Now().Add(30 * time.Second)
	for served() != serialOf(second) { // picked up by a handshake at most a second later, no Reload
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate is not served: %s", served())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// listen serves cfg on a loopback port: each connection gets a handshake and one byte.
func listen(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if c.(*tls.Conn).Handshake() == nil {
				_, _ = c.Write([]byte("x"))
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}
