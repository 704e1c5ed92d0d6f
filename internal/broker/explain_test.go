package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/testbed"
)

const testPassword = "hunter2-do-not-show"

// connector is a Connector for cfg whose TLS and SASL are stand-ins: explain only asks whether
// they are there.
func connector(t *testing.T, cfg config.Kafka) *Connector {
	t.Helper()
	c := &Connector{cfg: cfg}
	if cfg.TLS.Enabled {
		c.tls = &tls.Config{}
	}
	switch cfg.SASL.Mechanism {
	case config.SASLPlain:
		c.mechanism = plain.Mechanism{Username: cfg.SASL.Username, Password: cfg.SASL.Password}
	case config.SASLScramSHA256, config.SASLScramSHA512:
		m, err := scram.Mechanism(scram.SHA512, cfg.SASL.Username, cfg.SASL.Password)
		if err != nil {
			t.Fatal(err)
		}
		c.mechanism = m
	}
	return c
}

func TestExplainNamesTheSetting(t *testing.T) {
	plaintext := config.Kafka{AuthEventsTopic: "auth-events", LifecycleTopic: "key-lifecycle"}
	withTLS := func(t config.TLS) config.Kafka {
		k := plaintext
		k.TLS = config.KafkaTLS{Enabled: true, TLS: t}
		return k
	}
	withSASL := func(k config.Kafka, mechanism string) config.Kafka {
		k.SASL = config.SASL{Mechanism: mechanism, Username: "keywatch", Password: testPassword}
		return k
	}
	alert := func(text string) error { return &net.OpError{Op: "remote error", Err: errors.New(text)} }
	const addr = "10.0.0.7:9093"
	for _, tc := range []struct {
		name string
		cfg  config.Kafka
		f    failure
		want []string
	}{
		{"refused", plaintext, failure{stage: stageConnect, err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}},
			[]string{"cannot connect to " + addr, "(kafka.brokers)", "connection refused"}},
		{"unknown CA", withTLS(config.TLS{CAFile: "/etc/kafka/ca.pem"}),
			failure{stage: stageTLS, err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}},
			[]string{"TLS certificate of " + addr + " not trusted", "kafka.tls.ca_file /etc/kafka/ca.pem", "x509: certificate signed by unknown authority"}},
		{"unknown CA, system roots", withTLS(config.TLS{}),
			failure{stage: stageTLS, err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}},
			[]string{"not trusted", "kafka.tls.ca_file is empty: the system's CAs"}},
		{"wrong name", withTLS(config.TLS{}),
			failure{stage: stageTLS, err: &tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "10.0.0.7"}}},
			[]string{`not valid for the name "10.0.0.7"`, "kafka.tls.server_name"}},
		{"plaintext listener answers garbage", withTLS(config.TLS{}),
			failure{stage: stageTLS, err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}},
			[]string{"TLS handshake with " + addr + " failed: the broker does not speak TLS on this port? (kafka.tls.enabled)"}},
		{"plaintext listener hangs up", withTLS(config.TLS{}), failure{stage: stageTLS, err: io.EOF},
			[]string{"does not speak TLS on this port? (kafka.tls.enabled)", "EOF"}},
		{"plaintext listener waits", withTLS(config.TLS{}), failure{stage: stageTLS, err: os.ErrDeadlineExceeded},
			[]string{"does not speak TLS on this port? (kafka.tls.enabled)"}},
		{"client certificate missing, TLS 1.3", withTLS(config.TLS{}),
			failure{stage: stageFirstRequest, err: alert("tls: certificate required")},
			[]string{"requires a client certificate (kafka.tls.cert_file, kafka.tls.key_file)", "certificate required"}},
		{"client certificate missing, TLS 1.2", withTLS(config.TLS{}),
			failure{stage: stageTLS, err: alert("tls: bad certificate")},
			[]string{"requires a client certificate (kafka.tls.cert_file"}},
		{"client certificate rejected", withTLS(config.TLS{CertFile: "/etc/kafka/client.pem", KeyFile: "/etc/kafka/client-key.pem"}),
			failure{stage: stageTLS, err: alert("tls: unknown certificate authority")},
			[]string{"rejected the client certificate (kafka.tls.cert_file /etc/kafka/client.pem)"}},
		{"client certificate asked for, none configured", withTLS(config.TLS{}),
			failure{stage: stageTLS, err: alert("tls: handshake failure"), certAsked: true},
			[]string{"requires a client certificate (kafka.tls.cert_file"}},
		{"client certificate asked for, not from the broker's CAs", withTLS(config.TLS{CertFile: "/etc/kafka/client.pem", KeyFile: "/etc/kafka/client-key.pem"}),
			failure{stage: stageTLS, err: alert("tls: handshake failure"), certAsked: true},
			[]string{"asks for a client certificate from a CA it trusts, and kafka.tls.cert_file /etc/kafka/client.pem is not from one"}},
		{"client certificate sent, handshake refused", withTLS(config.TLS{CertFile: "/etc/kafka/client.pem", KeyFile: "/etc/kafka/client-key.pem"}),
			failure{stage: stageTLS, err: alert("tls: handshake failure"), certAsked: true, certSent: true},
			[]string{"rejected the client certificate (kafka.tls.cert_file /etc/kafka/client.pem)"}},
		{"TLS version", withTLS(config.TLS{MinVersion: "1.3"}), failure{stage: stageTLS, err: alert("tls: protocol version not supported")},
			[]string{`kafka.tls.min_version "1.3"`}},
		{"plaintext client, TLS listener", plaintext, failure{stage: stageFirstRequest, err: io.EOF, tlsListener: true},
			[]string{"speaks TLS on this port", "(kafka.tls.enabled)"}},
		{"plaintext client, TLS listener, SASL", withSASL(plaintext, config.SASLScramSHA512),
			failure{stage: stageFirstRequest, err: io.ErrUnexpectedEOF, tlsListener: true},
			[]string{"(kafka.tls.enabled)"}},
		{"not Kafka", plaintext, failure{stage: stageFirstRequest, err: io.EOF},
			[]string{"gave no Kafka answer in plaintext", "kafka.brokers, kafka.tls.enabled"}},
		{"mechanism not offered", withSASL(withTLS(config.TLS{}), config.SASLScramSHA512),
			failure{stage: stageSASLHandshake, err: kafka.UnsupportedSASLMechanism, offered: []string{"PLAIN", "SCRAM-SHA-256"}},
			[]string{"does not offer SASL SCRAM-SHA-512 (kafka.sasl.mechanism scram-sha-512); it offers PLAIN, SCRAM-SHA-256"}},
		{"listener without SASL", withSASL(plaintext, config.SASLPlain), failure{stage: stageSASLHandshake, err: kafka.IllegalSASLState},
			[]string{"takes no SASL on this listener (kafka.sasl.mechanism plain"}},
		{"wrong password, connection closed", withSASL(withTLS(config.TLS{}), config.SASLScramSHA512),
			failure{stage: stageSASLAuth, err: io.EOF},
			[]string{`kafka: sasl authentication failed (kafka.sasl.username "keywatch" / kafka.sasl.password, mechanism scram-sha-512): the broker closed the connection`}},
		{"wrong password, broker's message", withSASL(withTLS(config.TLS{}), config.SASLPlain),
			failure{stage: stageSASLAuth, err: kafka.SASLAuthenticationFailed, brokerSaid: "Authentication failed: Invalid username or password"},
			[]string{"sasl authentication failed (kafka.sasl.username", "mechanism plain", "Invalid username or password"}},
		{"IAM credentials refused", config.Kafka{TLS: config.KafkaTLS{Enabled: true}, SASL: config.SASL{Mechanism: config.SASLAWSMSKIAM}},
			failure{stage: stageSASLAuth, err: kafka.SASLAuthenticationFailed, brokerSaid: "[d1b8f3a1] Access denied"},
			[]string{"sasl authentication failed (AWS credentials from the default chain", "mechanism aws-msk-iam", "Access denied"}},
		{"no AWS credentials", config.Kafka{TLS: config.KafkaTLS{Enabled: true}, SASL: config.SASL{Mechanism: config.SASLAWSMSKIAM}},
			failure{stage: stageSASLStart, err: errors.New("failed to refresh cached credentials, no EC2 IMDS role found")},
			[]string{"aws-msk-iam", "no AWS credentials from the default chain", "no EC2 IMDS role found"}},
		{"SASL required", withTLS(config.TLS{}), failure{stage: stageMetadata, err: io.EOF},
			[]string{"it requires SASL? (kafka.sasl.mechanism is none)"}},
		{"no topic", plaintext, failure{stage: stageMetadata, err: kafka.UnknownTopicOrPartition, topic: "key-lifecycle"},
			[]string{`topic "key-lifecycle" does not exist (kafka.lifecycle_topic)`}},
		{"topic not allowed", withSASL(plaintext, config.SASLScramSHA256), failure{stage: stageMetadata, err: kafka.TopicAuthorizationFailed, topic: "auth-events"},
			[]string{`not allowed to read topic "auth-events" (kafka.auth_events_topic;`, `kafka.sasl.username "keywatch"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.addr = addr
			err := connector(t, tc.cfg).explain(tc.f)
			msg := err.Error()
			if !strings.HasPrefix(msg, "kafka: ") {
				t.Errorf("%q does not start with kafka: ", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q\ndoes not say %q", msg, w)
				}
			}
			if strings.Contains(msg, testPassword) {
				t.Errorf("%q holds the password", msg)
			}
			if len(msg) > 400 {
				t.Errorf("%d characters, too long for /readyz: %q", len(msg), msg)
			}
			if !errors.Is(err, tc.f.err) && tc.f.stage != stageSASLAuth && tc.f.stage != stageSASLHandshake && tc.f.topic == "" {
				t.Errorf("%v does not wrap %v", err, tc.f.err)
			}
		})
	}
}

func TestMechanismAndWarnings(t *testing.T) {
	ca, clientCert, clientKey := testCerts(t, t.TempDir())
	for _, tc := range []struct {
		name     string
		cfg      config.Kafka
		want     string
		warnings []string
	}{
		{"plaintext", config.Kafka{}, "plaintext, no SASL", nil},
		{"plain without TLS", config.Kafka{SASL: config.SASL{Mechanism: config.SASLPlain, Username: "kw", Password: testPassword}},
			`SASL plain as "kw" over plaintext`, []string{"password crosses the network in clear text"}},
		{"scram over mTLS", config.Kafka{
			TLS:  config.KafkaTLS{Enabled: true, TLS: config.TLS{CAFile: ca, CertFile: clientCert, KeyFile: clientKey, MinVersion: "1.3"}},
			SASL: config.SASL{Mechanism: config.SASLScramSHA512, Username: "kw", Password: testPassword}},
			fmt.Sprintf(`SASL scram-sha-512 as "kw" over TLS (CA %s, client certificate %s, TLS 1.3 or later)`, ca, clientCert), nil},
		{"TLS, system CAs", config.Kafka{TLS: config.KafkaTLS{Enabled: true, TLS: config.TLS{ServerName: "kafka.internal"}}},
			"TLS (system CAs, server name kafka.internal), no SASL", nil},
		{"unverified", config.Kafka{TLS: config.KafkaTLS{Enabled: true, TLS: config.TLS{InsecureSkipVerify: true}},
			SASL: config.SASL{Mechanism: config.SASLPlain, Username: "kw", Password: testPassword}},
			`SASL plain as "kw" over TLS (certificate NOT verified)`, []string{"certificate verification is OFF"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Mechanism(); got != tc.want {
				t.Errorf("Mechanism() = %q, want %q", got, tc.want)
			}
			got := c.Warnings()
			if len(got) != len(tc.warnings) {
				t.Fatalf("Warnings() = %q, want %d", got, len(tc.warnings))
			}
			for i, w := range tc.warnings {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q does not say %q", got[i], w)
				}
			}
			for _, s := range append(got, c.Mechanism()) {
				if strings.Contains(s, testPassword) {
					t.Errorf("%q holds the password", s)
				}
			}
		})
	}
}

func TestNewNamesTheBadSetting(t *testing.T) {
	dir := t.TempDir()
	ca, clientCert, clientKey := testCerts(t, dir)
	notPEM := dir + "/not.pem"
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	on := func(t config.TLS) config.KafkaTLS { return config.KafkaTLS{Enabled: true, TLS: t} }
	for _, tc := range []struct {
		name string
		cfg  config.Kafka
		want string
	}{
		{"CA missing", config.Kafka{TLS: on(config.TLS{CAFile: dir + "/nope.pem"})}, "kafka.tls.ca_file: open " + dir + "/nope.pem: no such file"},
		{"CA not PEM", config.Kafka{TLS: on(config.TLS{CAFile: notPEM})}, "kafka.tls.ca_file: " + notPEM + ": no certificates found"},
		{"key not PEM", config.Kafka{TLS: on(config.TLS{CAFile: ca, CertFile: clientCert, KeyFile: notPEM})}, "kafka.tls.cert_file, kafka.tls.key_file: " + clientCert + ", " + notPEM},
		{"key alone", config.Kafka{TLS: on(config.TLS{KeyFile: clientKey})}, "a client certificate needs both"},
		{"TLS version", config.Kafka{TLS: on(config.TLS{MinVersion: "1.1"})}, `kafka.tls.min_version: "1.1"`},
		{"mechanism", config.Kafka{SASL: config.SASL{Mechanism: "gssapi"}}, `kafka.sasl.mechanism: "gssapi"`},
		// The SCRAM library quotes a password it cannot prepare; the error must not.
		{"SCRAM password", config.Kafka{SASL: config.SASL{Mechanism: config.SASLScramSHA256, Username: "kw", Password: testPassword + "\u0007"}},
			"kafka.sasl.username / kafka.sasl.password: not usable with scram-sha-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("%q holds the password", err)
			}
		})
	}
}

// testCerts writes a CA and a client certificate with its key to dir and returns their files.
func testCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	certs, err := testbed.NewKafkaCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	return certs.CA.CertFile, certs.Client.CertFile, certs.Client.KeyFile
}
