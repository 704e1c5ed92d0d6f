package ingest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/broker"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/testbed"
)

// newSecuredEnv is an env on a broker secured as o says, whose consumer and test clients reach
// it as keywatch does with the settings cfg, through internal/broker.
func newSecuredEnv(t *testing.T, o testbed.KafkaOptions, cfg config.Kafka) (*env, config.Kafka) {
	t.Helper()
	e := newEnvOn(t, nil, o)
	cfg.Brokers, cfg.AuthEventsTopic, cfg.LifecycleTopic = e.kafka.Brokers, authTopic, lifecycleTopic
	c, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	e.opts.Dialer, e.opts.Transport = c.Dialer(), c.Transport()
	e.kafka.Transport = c.Transport()
	return e, cfg
}

func newKafkaCerts(t *testing.T) *testbed.KafkaCerts {
	t.Helper()
	certs, err := testbed.NewKafkaCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// storesExactlyOnce has produce write n events with distinct request ids to the auth events
// topic, consumes until every one is stored and committed, and checks each was stored once.
func (e *env) storesExactlyOnce(t *testing.T, n int, produce func(ctx context.Context, values [][]byte) error) {
	t.Helper()
	values := make([][]byte, n)
	for i := range values {
		values[i] = fmt.Appendf(nil, `{"ts":%d,"key_id":"kid_%d","client_id":"client_%d","status":200,"request_id":"r-%d"}`,
			time.Now().UnixMilli(), i%17, i%5, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := produce(ctx, values); err != nil {
		t.Fatal(err)
	}
	stop := e.run(t)
	waitFor(t, "every event stored and committed", 2*time.Minute, func() bool {
		return e.count(t, "SELECT count() FROM auth_events") >= uint64(n) && e.lag(t, authTopic) == 0
	})
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if got := e.count(t, "SELECT count() FROM auth_events"); got != uint64(n) {
		t.Errorf("auth_events holds %d rows, want %d", got, n)
	}
	if got := e.count(t, "SELECT uniqExact(request_id) FROM auth_events"); got != uint64(n) {
		t.Errorf("auth_events holds %d distinct request ids, want %d (each event exactly once)", got, n)
	}
	if got := e.count(t, "SELECT count() FROM dead_letters"); got != 0 {
		t.Errorf("%d dead letters, want none", got)
	}
}

func TestIngestOverTLSWithSASL(t *testing.T) {
	certs := newKafkaCerts(t)
	for _, m := range []struct{ setting, kafka string }{
		{config.SASLPlain, "PLAIN"}, {config.SASLScramSHA256, "SCRAM-SHA-256"}, {config.SASLScramSHA512, "SCRAM-SHA-512"},
	} {
		t.Run(m.setting, func(t *testing.T) {
			password := "secret-for-" + m.setting
			e, _ := newSecuredEnv(t,
				testbed.KafkaOptions{TLS: certs.ServerTLS(false), Users: []testbed.KafkaUser{{Mechanism: m.kafka, Name: "keywatch", Password: password}}},
				config.Kafka{
					TLS:  config.KafkaTLS{Enabled: true, TLS: config.TLS{CAFile: certs.CA.CertFile}},
					SASL: config.SASL{Mechanism: m.setting, Username: "keywatch", Password: password},
				})
			e.storesExactlyOnce(t, 10_000, func(ctx context.Context, values [][]byte) error {
				return e.kafka.Produce(ctx, authTopic, values...)
			})
		})
	}
}

func TestIngestOverMutualTLS(t *testing.T) {
	certs := newKafkaCerts(t)
	e, cfg := newSecuredEnv(t, testbed.KafkaOptions{TLS: certs.ServerTLS(true)}, config.Kafka{
		TLS: config.KafkaTLS{Enabled: true, TLS: config.TLS{CAFile: certs.CA.CertFile, CertFile: certs.Client.CertFile, KeyFile: certs.Client.KeyFile}},
	})
	e.storesExactlyOnce(t, 10_000, func(ctx context.Context, values [][]byte) error {
		return e.kafka.Produce(ctx, authTopic, values...)
	})

	cfg.TLS.CertFile, cfg.TLS.KeyFile = "", ""
	c, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = c.Probe(ctx)
	if err == nil || !strings.Contains(err.Error(), "kafka.tls.cert_file") {
		t.Fatalf("Probe without the client certificate: %v, want an error naming kafka.tls.cert_file", err)
	}
	t.Log(err)
}
