package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/internal/config"
)

// stage is how far a connection got; later stages are further.
type stage int

const (
	stageConnect       stage = iota // TCP
	stageTLS                        // the TLS handshake
	stageFirstRequest               // the first Kafka request (ApiVersions)
	stageSASLHandshake              // asking for the SASL mechanism
	stageSASLStart                  // the mechanism's first message, made on this side
	stageSASLAuth                   // the SASL exchange
	stageMetadata                   // the metadata request for the configured topics
)

// failure is what went wrong connecting to one broker.
type failure struct {
	addr  string
	stage stage
	err   error
	// brokerSaid is the broker's own error message, where the protocol carries one.
	brokerSaid string
	// offered are the SASL mechanisms the broker offers, from a refused handshake.
	offered []string
	// tlsListener: the connection was cut or went unanswered in plaintext, and a TLS handshake
	// with the same address then went through.
	tlsListener bool
	// topic is the topic the metadata answer refused.
	topic string
	// certAsked: the broker asked for a client certificate in the TLS handshake; certSent: one
	// was sent (kafka.tls.cert_file, when its CA is one the broker named).
	certAsked, certSent bool
}

// explain turns f into the error Probe returns: "kafka: " what failed, the setting to look at,
// and what the broker said. It does no I/O.
func (c *Connector) explain(f failure) error {
	err, addr := f.err, f.addr
	tlsCfg := c.cfg.TLS.TLS
	if f.stage == stageConnect {
		return fmt.Errorf("kafka: cannot connect to %s (kafka.brokers): %w", addr, err)
	}
	if alert := remoteAlert(err); c.tls != nil && alert != "" {
		aboutCert := strings.Contains(alert, "certificate")
		switch {
		case f.certAsked && !f.certSent && tlsCfg.CertFile != "":
			return fmt.Errorf("kafka: broker %s asks for a client certificate from a CA it trusts, and kafka.tls.cert_file %s is not from one: %w", addr, tlsCfg.CertFile, err)
		case f.certAsked && !f.certSent, !f.certAsked && aboutCert && tlsCfg.CertFile == "":
			return fmt.Errorf("kafka: broker %s requires a client certificate (kafka.tls.cert_file, kafka.tls.key_file): %w", addr, err)
		case aboutCert || f.certSent && strings.Contains(alert, "handshake failure"):
			return fmt.Errorf("kafka: broker %s rejected the client certificate (kafka.tls.cert_file %s): %w", addr, tlsCfg.CertFile, err)
		case strings.Contains(alert, "protocol version"):
			return fmt.Errorf("kafka: broker %s refused the TLS version (kafka.tls.min_version %q): %w", addr, tlsCfg.MinVersion, err)
		default:
			return fmt.Errorf("kafka: broker %s refused the TLS handshake (kafka.tls): %w", addr, err)
		}
	}
	if f.stage == stageTLS {
		return c.explainTLS(f)
	}
	if c.tls == nil && f.tlsListener {
		return fmt.Errorf("kafka: broker %s speaks TLS on this port, and keywatch connected in plaintext (kafka.tls.enabled): %w", addr, err)
	}

	mech := c.cfg.SASL.Mechanism
	switch f.stage {
	case stageFirstRequest:
		if c.tls == nil {
			return fmt.Errorf("kafka: %s gave no Kafka answer in plaintext: is it a Kafka listener, without TLS? (kafka.brokers, kafka.tls.enabled): %w", addr, err)
		}
		return fmt.Errorf("kafka: %s gave no Kafka answer over TLS: is it a Kafka listener? (kafka.brokers): %w", addr, err)
	case stageSASLHandshake:
		var kerr kafka.Error
		switch {
		case errors.As(err, &kerr) && kerr == kafka.UnsupportedSASLMechanism:
			return fmt.Errorf("kafka: broker %s does not offer SASL %s (kafka.sasl.mechanism %s); it offers %s", addr, c.mechanism.Name(), mech, offered(f.offered))
		case errors.As(err, &kerr) && kerr == kafka.IllegalSASLState, cutOff(err):
			return fmt.Errorf("kafka: broker %s takes no SASL on this listener (kafka.sasl.mechanism %s; or kafka.brokers names the wrong port): %w", addr, mech, err)
		}
		return fmt.Errorf("kafka: SASL handshake with %s failed (kafka.sasl.mechanism %s): %w", addr, mech, err)
	case stageSASLStart:
		if mech == config.SASLAWSMSKIAM {
			return fmt.Errorf("kafka: cannot sign the aws-msk-iam authentication: no AWS credentials from the default chain (environment, IRSA web identity, instance role)? %w", err)
		}
		return fmt.Errorf("kafka: cannot start SASL %s (kafka.sasl.mechanism): %w", mech, err)
	case stageSASLAuth:
		var kerr kafka.Error
		if cutOff(err) || errors.As(err, &kerr) && kerr == kafka.SASLAuthenticationFailed {
			return fmt.Errorf("kafka: sasl authentication failed (%s, mechanism %s): %s", c.credentials(), mech, said(f))
		}
		return fmt.Errorf("kafka: SASL %s with %s failed (%s): %s", mech, addr, c.credentials(), said(f))
	case stageMetadata:
		var kerr kafka.Error
		switch {
		case f.topic != "" && errors.As(err, &kerr) && kerr == kafka.UnknownTopicOrPartition:
			return fmt.Errorf("kafka: topic %q does not exist (%s)", f.topic, c.topicSetting(f.topic))
		case f.topic != "" && errors.As(err, &kerr) && kerr == kafka.TopicAuthorizationFailed:
			return fmt.Errorf("kafka: not allowed to read topic %q (%s; the brokers' ACLs for %s)", f.topic, c.topicSetting(f.topic), c.credentials())
		case f.topic != "":
			return fmt.Errorf("kafka: topic %q (%s): %w", f.topic, c.topicSetting(f.topic), err)
		case c.mechanism == nil && (cutOff(err) || timedOut(err)):
			return fmt.Errorf("kafka: broker %s gave no metadata to a client without SASL: it requires SASL? (kafka.sasl.mechanism is none): %w", addr, err)
		}
		return fmt.Errorf("kafka: metadata request to %s failed: %w", addr, err)
	}
	return fmt.Errorf("kafka: %s: %w", addr, err)
}

// explainTLS explains a failed TLS handshake.
func (c *Connector) explainTLS(f failure) error {
	err, addr := f.err, f.addr
	t := c.cfg.TLS.TLS
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		header    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA):
		roots := "kafka.tls.ca_file " + t.CAFile
		if t.CAFile == "" {
			roots = "kafka.tls.ca_file is empty: the system's CAs"
		}
		return fmt.Errorf("kafka: TLS certificate of %s not trusted (%s): %w", addr, roots, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("kafka: TLS certificate of %s is not valid for the name %q (kafka.tls.server_name): %w", addr, hostname.Host, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("kafka: TLS certificate of %s is invalid (the broker's certificate, or kafka.tls.ca_file %s): %w", addr, t.CAFile, err)
	case errors.As(err, &header), cutOff(err), timedOut(err):
		return fmt.Errorf("kafka: TLS handshake with %s failed: the broker does not speak TLS on this port? (kafka.tls.enabled): %w", addr, err)
	}
	return fmt.Errorf("kafka: TLS handshake with %s failed (kafka.tls): %w", addr, err)
}

// credentials names the settings that say who keywatch is, without the secret.
func (c *Connector) credentials() string {
	if c.cfg.SASL.Mechanism == config.SASLAWSMSKIAM {
		return fmt.Sprintf("AWS credentials from the default chain, region %s", c.awsRegion)
	}
	return fmt.Sprintf("kafka.sasl.username %q / kafka.sasl.password", c.cfg.SASL.Username)
}

// topicSetting names the setting that names topic.
func (c *Connector) topicSetting(topic string) string {
	if topic == c.cfg.LifecycleTopic {
		return "kafka.lifecycle_topic"
	}
	return "kafka.auth_events_topic"
}

// said is what the broker said about f: its own message when it sent one.
func said(f failure) string {
	switch {
	case f.brokerSaid != "":
		return fmt.Sprintf("%v: %s", f.err, f.brokerSaid)
	case cutOff(f.err):
		return fmt.Sprintf("the broker closed the connection (%v)", f.err)
	}
	return f.err.Error()
}

func offered(mechanisms []string) string {
	if len(mechanisms) == 0 {
		return "none"
	}
	return strings.Join(mechanisms, ", ")
}

// remoteAlert returns the TLS alert the other side sent ("tls: bad certificate"), or "".
func remoteAlert(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		return op.Err.Error()
	}
	return ""
}

// cutOff says whether err is the other side closing or resetting the connection.
func cutOff(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// timedOut says whether err is a deadline passing.
func timedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}
