package testbed

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority made for one test: it issues server and client certificates and
// writes them as PEM files, as operators hand them to keywatch.
type CA struct {
	// CertFile is the CA's certificate, PEM: what a client's ca_file names.
	CertFile string
	// Pool holds the CA's certificate.
	Pool *x509.CertPool

	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	n    int64
}

// Issued is a certificate the CA signed, with its key, in memory and as PEM files.
type Issued struct {
	TLS      tls.Certificate
	CertFile string
	KeyFile  string
}

// NewCA makes a CA whose files go to dir.
func NewCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testbed: generate the key of CA %s: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testbed: sign the certificate of CA %s: %w", name, err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{dir: dir, cert: cert, key: key, n: 1, Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	ca.CertFile = filepath.Join(dir, name+"-ca.pem")
	return ca, os.WriteFile(ca.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

// Server issues a server certificate for the DNS names and IP addresses in hosts; its files are
// named after name.
func (ca *CA) Server(name string, hosts ...string) (Issued, error) {
	return ca.issue(name, x509.ExtKeyUsageServerAuth, hosts)
}

// Client issues a client certificate (for mTLS) whose common name is name.
func (ca *CA) Client(name string) (Issued, error) {
	return ca.issue(name, x509.ExtKeyUsageClientAuth, nil)
}

func (ca *CA) issue(name string, usage x509.ExtKeyUsage, hosts []string) (Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, err
	}
	ca.n++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.n),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return Issued{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Issued{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	out := Issued{CertFile: filepath.Join(ca.dir, name+".pem"), KeyFile: filepath.Join(ca.dir, name+"-key.pem")}
	if err := os.WriteFile(out.CertFile, certPEM, 0o600); err != nil {
		return out, err
	}
	if err := os.WriteFile(out.KeyFile, keyPEM, 0o600); err != nil {
		return out, err
	}
	out.TLS, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return out, fmt.Errorf("testbed: certificate %s: %w", name, err)
	}
	return out, nil
}

// KafkaCerts are a test CA's certificates for a TLS cluster (KafkaOptions.TLS): the server's, for
// the cluster's loopback addresses, and a client's, for mTLS.
type KafkaCerts struct {
	CA             *CA
	Server, Client Issued
}

// NewKafkaCerts makes a CA whose files go to dir and issues the cluster's and a client's
// certificates.
func NewKafkaCerts(dir string) (*KafkaCerts, error) {
	ca, err := NewCA(dir, "kafka-test")
	if err != nil {
		return nil, err
	}
	c := &KafkaCerts{CA: ca}
	if c.Server, err = ca.Server("kafka-server", "127.0.0.1", "localhost"); err != nil {
		return nil, err
	}
	if c.Client, err = ca.Client("kafka-client"); err != nil {
		return nil, err
	}
	return c, nil
}

// ServerTLS is the cluster's TLS configuration; mutual makes the cluster require a client
// certificate that the CA signed.
func (c *KafkaCerts) ServerTLS(mutual bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{c.Server.TLS}, MinVersion: tls.VersionTLS12}
	if mutual {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = c.CA.Pool
	}
	return cfg
}
