package broker_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/internal/broker"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/testbed"
)

const (
	topic    = "auth-events"
	user     = "keywatch"
	password = "correct-horse-battery"
)

// mechanisms are the SASL mechanisms as keywatch's configuration and as Kafka name them.
var mechanisms = []struct{ setting, kafka string }{
	{config.SASLPlain, "PLAIN"}, {config.SASLScramSHA256, "SCRAM-SHA-256"}, {config.SASLScramSHA512, "SCRAM-SHA-512"},
}

// cluster is a test cluster and the settings of a client that reaches it.
type cluster struct {
	kafka *testbed.Kafka
	cfg   config.Kafka
}

// start starts a cluster with topic: with TLS when serverTLS is given (from certs) and SASL when
// a user is. Its cfg reaches it, trusting certs's CA, without a client certificate.
func start(t *testing.T, certs *testbed.KafkaCerts, serverTLS *tls.Config, users ...testbed.KafkaUser) *cluster {
	t.Helper()
	o := testbed.KafkaOptions{Partitions: 1, Topics: []string{topic}, Users: users, TLS: serverTLS}
	c := &cluster{}
	if serverTLS != nil {
		c.cfg.TLS = config.KafkaTLS{Enabled: true, TLS: config.TLS{CAFile: certs.CA.CertFile}}
	}
	k, err := testbed.StartKafkaWith(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	c.kafka = k
	c.cfg.Brokers, c.cfg.AuthEventsTopic = k.Brokers, topic
	if len(users) > 0 {
		c.cfg.SASL = config.SASL{Mechanism: strings.ToLower(users[0].Mechanism), Username: users[0].Name, Password: users[0].Password}
	}
	return c
}

func newCerts(t *testing.T) *testbed.KafkaCerts {
	t.Helper()
	certs, err := testbed.NewKafkaCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// probe runs Probe for cfg under a generous deadline: Probe bounds itself.
func probe(t *testing.T, cfg config.Kafka) error {
	t.Helper()
	c, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = c.Probe(ctx)
	if err != nil {
		t.Log(err)
	}
	return err
}

// wantProbeError fails t unless err says all of want and holds no password.
func wantProbeError(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Probe succeeded, want an error saying %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q\ndoes not say %q", err, w)
		}
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("%q holds the password", err)
	}
}

func TestEachMechanismOverTLS(t *testing.T) {
	certs := newCerts(t)
	for _, m := range mechanisms {
		t.Run(m.setting, func(t *testing.T) {
			c := start(t, certs, certs.ServerTLS(false), testbed.KafkaUser{Mechanism: m.kafka, Name: user, Password: password})
			if err := probe(t, c.cfg); err != nil {
				t.Fatal(err)
			}
			conn, err := broker.New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			// The Transport writes (kafka.Writer) and the Dialer reads (kafka.Reader).
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c.kafka.Transport = conn.Transport()
			var values [][]byte
			for i := range 10 {
				values = append(values, fmt.Appendf(nil, "message %d", i))
			}
			if err := c.kafka.Produce(ctx, topic, values...); err != nil {
				t.Fatal(err)
			}
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: c.cfg.Brokers, Topic: topic, Partition: 0, Dialer: conn.Dialer(), MaxWait: 100 * time.Millisecond})
			defer r.Close()
			for i := range values {
				msg, err := r.ReadMessage(ctx)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if string(msg.Value) != string(values[i]) {
					t.Fatalf("message %d is %q, want %q", i, msg.Value, values[i])
				}
			}
		})
	}
}

func TestWrongPasswordNamesTheCredentials(t *testing.T) {
	certs := newCerts(t)
	for _, m := range mechanisms {
		t.Run(m.setting, func(t *testing.T) {
			c := start(t, certs, certs.ServerTLS(false), testbed.KafkaUser{Mechanism: m.kafka, Name: user, Password: password + "-rotated"})
			c.cfg.SASL.Password = password
			wantProbeError(t, probe(t, c.cfg),
				fmt.Sprintf(`kafka: sasl authentication failed (kafka.sasl.username "keywatch" / kafka.sasl.password, mechanism %s): `, m.setting))
		})
	}
}

func TestUntrustedCANamesCAFile(t *testing.T) {
	ca := newCerts(t)
	c := start(t, ca, ca.ServerTLS(false))
	other := newCerts(t)
	c.cfg.TLS.CAFile = other.CA.CertFile
	wantProbeError(t, probe(t, c.cfg), "kafka: TLS certificate of "+c.cfg.Brokers[0]+" not trusted (kafka.tls.ca_file "+other.CA.CertFile+")", "x509: ")
}

func TestWrongServerNameNamesServerName(t *testing.T) {
	ca := newCerts(t)
	c := start(t, ca, ca.ServerTLS(false))
	c.cfg.TLS.ServerName = "kafka.elsewhere.example"
	wantProbeError(t, probe(t, c.cfg), `not valid for the name "kafka.elsewhere.example" (kafka.tls.server_name)`)
}

func TestPlaintextClientAgainstTLSListenerNamesTLSEnabled(t *testing.T) {
	for _, users := range [][]testbed.KafkaUser{nil, {{Mechanism: "SCRAM-SHA-512", Name: user, Password: password}}} {
		t.Run(fmt.Sprintf("%d users", len(users)), func(t *testing.T) {
			ca := newCerts(t)
			c := start(t, ca, ca.ServerTLS(false), users...)
			c.cfg.TLS = config.KafkaTLS{}
			wantProbeError(t, probe(t, c.cfg), "speaks TLS on this port", "(kafka.tls.enabled)")
		})
	}
}

func TestTLSClientAgainstPlaintextListenerNamesTLSEnabled(t *testing.T) {
	t.Parallel() // the test broker waits for the rest of what it takes for a huge request
	c := start(t, nil, nil)
	c.cfg.TLS = config.KafkaTLS{Enabled: true, TLS: config.TLS{CAFile: newCerts(t).CA.CertFile}}
	wantProbeError(t, probe(t, c.cfg), "kafka: TLS handshake with "+c.cfg.Brokers[0]+" failed: the broker does not speak TLS on this port? (kafka.tls.enabled)")
}

func TestMutualTLS(t *testing.T) {
	certs := newCerts(t)
	scram := testbed.KafkaUser{Mechanism: "SCRAM-SHA-256", Name: user, Password: password}
	// TLS 1.3 refuses a missing client certificate after the client's handshake is done, at its
	// first read; TLS 1.2 within the handshake.
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run("without a client certificate, "+tls.VersionName(version), func(t *testing.T) {
			server := certs.ServerTLS(true)
			server.MaxVersion = version
			c := start(t, certs, server, scram)
			wantProbeError(t, probe(t, c.cfg), "requires a client certificate (kafka.tls.cert_file, kafka.tls.key_file)")
		})
	}
	c := start(t, certs, certs.ServerTLS(true), scram)
	c.cfg.TLS.CertFile, c.cfg.TLS.KeyFile = certs.Client.CertFile, certs.Client.KeyFile
	if err := probe(t, c.cfg); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	stranger := newCerts(t) // a client certificate from a CA the cluster does not know
	c.cfg.TLS.CertFile, c.cfg.TLS.KeyFile = stranger.Client.CertFile, stranger.Client.KeyFile
	wantProbeError(t, probe(t, c.cfg), "kafka.tls.cert_file")
}

func TestSASLRequiredNamesTheMechanism(t *testing.T) {
	ca := newCerts(t)
	c := start(t, ca, ca.ServerTLS(false), testbed.KafkaUser{Mechanism: "PLAIN", Name: user, Password: password})
	c.cfg.SASL = config.SASL{Mechanism: config.SASLNone}
	wantProbeError(t, probe(t, c.cfg), "requires SASL? (kafka.sasl.mechanism is none)")
}

func TestMissingTopicNamesTheSetting(t *testing.T) {
	c := start(t, nil, nil)
	c.cfg.LifecycleTopic = "key-lifecycle"
	wantProbeError(t, probe(t, c.cfg), `kafka: topic "key-lifecycle" does not exist (kafka.lifecycle_topic)`)
}

func TestUnreachableNamesBrokers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	wantProbeError(t, probe(t, config.Kafka{Brokers: []string{addr}}), "kafka: cannot connect to "+addr+" (kafka.brokers)")
}

// TestProbeReportsTheBrokerThatGotFurthest: with one broker down and one refusing the password,
// the password is what to fix.
func TestProbeReportsTheBrokerThatGotFurthest(t *testing.T) {
	c := start(t, nil, nil, testbed.KafkaUser{Mechanism: "SCRAM-SHA-512", Name: user, Password: password})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	c.cfg.Brokers = []string{down, c.cfg.Brokers[0]}
	c.cfg.SASL.Password = "wrong"
	wantProbeError(t, probe(t, c.cfg), "sasl authentication failed")
}

// TestProbeIsBounded: a listener that accepts and never answers does not hold Probe past its
// bound.
func TestProbeIsBounded(t *testing.T) {
	t.Parallel() // it waits: let the others run meanwhile
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // after the parallel subtests
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("TLS %v", tlsOn), func(t *testing.T) {
			t.Parallel()
			cfg := config.Kafka{Brokers: []string{ln.Addr().String()}, TLS: config.KafkaTLS{Enabled: tlsOn}}
			err := probe(t, cfg)
			wantProbeError(t, err, ln.Addr().String())
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("%v: want Probe's own deadline", err)
			}
		})
	}
}
