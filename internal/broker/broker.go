// Package broker owns how keywatch reaches the Kafka brokers: TLS (CA, client certificate for
// mTLS, server name, minimum version), the SASL mechanisms (PLAIN, SCRAM-SHA-256/512, AWS MSK
// IAM with the AWS default credential chain), the kafka-go Dialer and Transport built from
// config.Kafka, and naming why a connection failed (Probe). It does not own what is consumed or
// produced, nor which topics exist: ingest and leader open their own clients with what it builds.
package broker

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/tlsconfig"
)

const (
	// clientID is how the brokers' logs and quotas name keywatch's connections.
	clientID = "keywatch"
	// dialTimeout bounds connecting to a broker: TCP, and for the Transport also TLS and SASL.
	dialTimeout = 10 * time.Second
)

// Connector is everything keywatch's Kafka clients need to reach the brokers of one
// config.Kafka. It is safe for concurrent use.
type Connector struct {
	cfg       config.Kafka
	tls       *tls.Config    // nil: plaintext
	mechanism sasl.Mechanism // nil: no SASL
	awsRegion string         // aws-msk-iam: the region signed for
	transport *kafka.Transport
}

// New builds the TLS configuration and SASL mechanism cfg describes. Files (CA, client
// certificate) are read now; AWS credentials are fetched from the default chain at each
// authentication. Errors name the setting at fault; they never hold a secret.
func New(cfg config.Kafka) (*Connector, error) {
	c := &Connector{cfg: cfg}
	if cfg.TLS.Enabled {
		t, err := tlsconfig.Client(cfg.TLS.TLS, "kafka.tls")
		if err != nil {
			return nil, err
		}
		c.tls = t
	}
	m, region, err := newMechanism(cfg.SASL)
	if err != nil {
		return nil, err
	}
	c.mechanism, c.awsRegion = m, region
	c.transport = &kafka.Transport{
		Dial:        (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		DialTimeout: dialTimeout,
		ClientID:    clientID,
		TLS:         c.tls,
		SASL:        c.mechanism,
	}
	return c, nil
}

// Dialer returns a new dialer that opens connections with the configured TLS and SASL: for
// kafka.ConsumerGroupConfig.Dialer, kafka.ReaderConfig.Dialer, and in place of kafka.DialContext.
func (c *Connector) Dialer() *kafka.Dialer {
	return &kafka.Dialer{
		ClientID:      clientID,
		Timeout:       dialTimeout,
		DualStack:     true,
		KeepAlive:     30 * time.Second,
		TLS:           c.tls,
		SASLMechanism: c.mechanism,
	}
}

// Transport returns the connector's transport, for kafka.Client and kafka.Writer. It is shared:
// its pooled connections serve every client given it.
func (c *Connector) Transport() *kafka.Transport { return c.transport }

// Mechanism describes in one line how keywatch authenticates to the brokers and protects its
// connections, for check-config and the start log, e.g. `SASL scram-sha-512 as "keywatch" over
// TLS (CA /etc/ca.pem, client certificate /etc/kafka/client.pem)` or `plaintext, no SASL`. It
// holds no secret.
func (c *Connector) Mechanism() string {
	var auth string
	switch m := c.cfg.SASL.Mechanism; m {
	case "", config.SASLNone:
		auth = "no SASL"
	case config.SASLAWSMSKIAM:
		auth = fmt.Sprintf("SASL aws-msk-iam (AWS default credential chain, region %s)", c.awsRegion)
	default:
		auth = fmt.Sprintf("SASL %s as %q", m, c.cfg.SASL.Username)
	}
	if c.tls == nil {
		if c.mechanism == nil {
			return "plaintext, no SASL"
		}
		return auth + " over plaintext"
	}
	t := c.cfg.TLS.TLS
	var details []string
	switch {
	case t.InsecureSkipVerify:
		details = append(details, "certificate NOT verified")
	case t.CAFile != "":
		details = append(details, "CA "+t.CAFile)
	default:
		details = append(details, "system CAs")
	}
	if t.CertFile != "" {
		details = append(details, "client certificate "+t.CertFile)
	}
	if t.ServerName != "" {
		details = append(details, "server name "+t.ServerName)
	}
	if t.MinVersion != "" {
		details = append(details, "TLS "+t.MinVersion+" or later")
	}
	secured := fmt.Sprintf("TLS (%s)", strings.Join(details, ", "))
	if c.mechanism == nil {
		return secured + ", no SASL"
	}
	return auth + " over " + secured
}

// Warnings are what the configuration gives up on, to be logged loudly at start.
func (c *Connector) Warnings() []string {
	var w []string
	if c.tls != nil {
		w = append(w, tlsconfig.Warnings(c.cfg.TLS.TLS, "kafka.tls")...)
	}
	if c.tls == nil && c.cfg.SASL.Mechanism == config.SASLPlain {
		w = append(w, "kafka.sasl.mechanism is plain and kafka.tls.enabled is false: the SASL password crosses the network in clear text")
	}
	return w
}
