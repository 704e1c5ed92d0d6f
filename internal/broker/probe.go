package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/apiversions"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/protocol/saslauthenticate"
	"github.com/segmentio/kafka-go/protocol/saslhandshake"
	"github.com/segmentio/kafka-go/sasl"
)

// ProbeTimeout bounds Probe, whatever the caller's context allows.
const ProbeTimeout = 7 * time.Second

// sniffTimeout is the part of ProbeTimeout kept for a second look at a listener that cut a
// plaintext request off: does it speak TLS?
const sniffTimeout = 2 * time.Second

// Probe connects to the bootstrap brokers in turn until one completes the TCP connection, TLS,
// SASL and a metadata request for the configured topics, step by step as the kafka-go clients
// do. It returns within ProbeTimeout (or the context's end, if sooner). Its error starts with
// "kafka: ", names the setting at fault and says what the broker said; with several brokers
// failing it is the one that got furthest.
func (c *Connector) Probe(ctx context.Context) error {
	if len(c.cfg.Brokers) == 0 {
		return errors.New("kafka: no brokers to connect to (kafka.brokers)")
	}
	pctx, cancel := context.WithTimeout(ctx, ProbeTimeout-sniffTimeout)
	defer cancel()
	var worst *failure
	for _, addr := range c.cfg.Brokers {
		f := c.probe(pctx, addr)
		if f == nil {
			return nil
		}
		if worst == nil || f.stage > worst.stage {
			worst = f
		}
		if pctx.Err() != nil {
			break
		}
	}
	if errors.Is(worst.err, net.ErrClosed) && pctx.Err() != nil {
		worst.err = pctx.Err() // the connection was closed because the context ended
	}
	// A plaintext request cut off or unanswered may have met a TLS listener (after an answer in
	// plaintext, it did not).
	if c.tls == nil && worst.stage == stageFirstRequest && (cutOff(worst.err) || timedOut(worst.err)) && ctx.Err() == nil {
		worst.tlsListener = speaksTLS(ctx, worst.addr)
	}
	return c.explain(*worst)
}

// probe walks one broker through every step; nil means it answered the metadata request.
func (c *Connector) probe(ctx context.Context, addr string) *failure {
	var certAsked, certSent bool
	fail := func(s stage, err error) *failure {
		return &failure{addr: addr, stage: s, err: err, certAsked: certAsked, certSent: certSent}
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(stageConnect, err)
	}
	defer raw.Close()
	// Every step reads and writes under ctx's deadline, and a context cancelled early closes the
	// connection, so no step outlives ctx.
	if deadline, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	conn := raw
	if c.tls != nil {
		cfg := c.tls.Clone()
		if cfg.ServerName == "" { // as kafka-go does: verify the host dialed
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		// Choose the client certificate as crypto/tls does, noting whether the broker asked for
		// one and got it: a TLS alert says little of why.
		certs := cfg.Certificates
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			certAsked = true
			for i := range certs {
				if cri.SupportsCertificate(&certs[i]) == nil {
					certSent = true
					return &certs[i], nil
				}
			}
			return new(tls.Certificate), nil
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(stageTLS, err)
		}
		conn = tc
	}

	pc := protocol.NewConn(conn, clientID)
	msg, err := pc.RoundTrip(new(apiversions.Request))
	if err != nil {
		return fail(stageFirstRequest, err)
	}
	av := msg.(*apiversions.Response)
	if av.ErrorCode != 0 {
		return fail(stageFirstRequest, kafka.Error(av.ErrorCode))
	}
	versions := make(map[protocol.ApiKey]int16, len(av.ApiKeys))
	for _, k := range av.ApiKeys {
		key := protocol.ApiKey(k.ApiKey)
		versions[key] = key.SelectVersion(k.MinVersion, k.MaxVersion)
	}
	pc.SetVersions(versions)

	if c.mechanism != nil {
		if f := c.authenticate(ctx, pc, addr); f != nil {
			f.certAsked, f.certSent = certAsked, certSent
			return f
		}
	}

	var topics []string
	for _, t := range []string{c.cfg.AuthEventsTopic, c.cfg.LifecycleTopic} {
		if t != "" {
			topics = append(topics, t)
		}
	}
	msg, err = pc.RoundTrip(&metadata.Request{TopicNames: topics})
	if err != nil {
		return fail(stageMetadata, err)
	}
	for _, t := range msg.(*metadata.Response).Topics {
		if t.ErrorCode != 0 {
			f := fail(stageMetadata, kafka.Error(t.ErrorCode))
			f.topic = t.Name
			return f
		}
	}
	return nil
}

// authenticate runs the SASL handshake and exchange on pc.
func (c *Connector) authenticate(ctx context.Context, pc *protocol.Conn, addr string) *failure {
	msg, err := pc.RoundTrip(&saslhandshake.Request{Mechanism: c.mechanism.Name()})
	if err != nil {
		return &failure{addr: addr, stage: stageSASLHandshake, err: err}
	}
	if hs := msg.(*saslhandshake.Response); hs.ErrorCode != 0 {
		return &failure{addr: addr, stage: stageSASLHandshake, err: kafka.Error(hs.ErrorCode), offered: hs.Mechanisms}
	}
	host, port, _ := net.SplitHostPort(addr)
	portNumber, _ := strconv.Atoi(port)
	ctx = sasl.WithMetadata(ctx, &sasl.Metadata{Host: host, Port: portNumber})
	session, state, err := c.mechanism.Start(ctx)
	if err != nil {
		return &failure{addr: addr, stage: stageSASLStart, err: err}
	}
	for done := false; !done; {
		msg, err := pc.RoundTrip(&saslauthenticate.Request{AuthBytes: state})
		if err != nil {
			return &failure{addr: addr, stage: stageSASLAuth, err: err}
		}
		res := msg.(*saslauthenticate.Response)
		if res.ErrorCode != 0 {
			return &failure{addr: addr, stage: stageSASLAuth, err: kafka.Error(res.ErrorCode), brokerSaid: res.ErrorMessage}
		}
		if done, state, err = session.Next(ctx, res.AuthBytes); err != nil {
			return &failure{addr: addr, stage: stageSASLAuth, err: fmt.Errorf("the broker's answer does not check out: %w", err)}
		}
	}
	return nil
}

// speaksTLS says whether addr completes a TLS handshake, or refuses one with a TLS alert. Only the
// protocol is in question, so the certificate is not verified.
func speaksTLS(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, sniffTimeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // nothing is sent over it
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return remoteAlert(err) != ""
	}
	conn.Close()
	return true
}
