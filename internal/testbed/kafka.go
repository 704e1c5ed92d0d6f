package testbed

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka is an in-process cluster that speaks the Kafka wire protocol on loopback.
type Kafka struct {
	// Brokers are the cluster's bootstrap addresses.
	Brokers []string
	// Transport is how the test bed's own clients (Writer, Produce, CommittedLag) reach the
	// cluster; nil: plaintext without SASL. A secured cluster's tests set it to what keywatch
	// would use, broker.Connector.Transport.
	Transport kafka.RoundTripper

	// own is the clients' transport when Transport is nil: the cluster's own rather than
	// kafka.DefaultTransport, which every cluster of the process shares, so that Restart can drop
	// the pooled connections to the broker that went away.
	own     *kafka.Transport
	cluster *kfake.Cluster
	opts    KafkaOptions

	mu     sync.Mutex
	codecs map[string]int // record batches produced, by compression codec
}

// KafkaOptions describe a test cluster.
type KafkaOptions struct {
	// Partitions of each of Topics, created at start.
	Partitions int32
	Topics     []string
	// Dir keeps the cluster's messages, topics and group offsets, so that Restart brings the same
	// cluster back on the same address; "": nothing is kept.
	Dir string
	// TLS serves every connection with TLS; ClientAuth tls.RequireAndVerifyClientCert in it makes
	// the cluster require client certificates (mTLS). nil: plaintext.
	TLS *tls.Config
	// Users switch SASL on: connections must authenticate as one of them. None: no SASL.
	Users []KafkaUser
}

// KafkaUser is a SASL user of a test cluster (a superuser: no ACL applies to it).
type KafkaUser struct {
	// Mechanism as Kafka names it: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism, Name, Password string
}

// StartKafka starts a one-broker cluster on a free loopback port with the given topics, each with
// the given number of partitions. It accepts produce batches of up to 16 MiB, so tests can send
// oversized messages.
func StartKafka(partitions int32, topics ...string) (*Kafka, error) {
	return StartKafkaWith(KafkaOptions{Partitions: partitions, Topics: topics})
}

// StartDurableKafka is StartKafka with the cluster's state kept in dir (KafkaOptions.Dir).
func StartDurableKafka(dir string, partitions int32, topics ...string) (*Kafka, error) {
	return StartKafkaWith(KafkaOptions{Partitions: partitions, Topics: topics, Dir: dir})
}

// StartKafkaWith starts a one-broker cluster on a free loopback port as o describes.
func StartKafkaWith(o KafkaOptions) (*Kafka, error) {
	k := &Kafka{opts: o, codecs: map[string]int{}, own: &kafka.Transport{Dial: (&net.Dialer{Timeout: 3 * time.Second}).DialContext}}
	return k, k.start(0)
}

func (k *Kafka) start(port int) error {
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.SeedTopics(k.opts.Partitions, k.opts.Topics...),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "16777216"}),
	}
	if k.opts.Dir != "" {
		opts = append(opts, kfake.DataDir(k.opts.Dir))
	}
	if k.opts.TLS != nil {
		opts = append(opts, kfake.TLS(k.opts.TLS))
	}
	if len(k.opts.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range k.opts.Users {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.Name, u.Password))
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("testbed: start kafka: %w", err)
	}
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.countCodecs(req.(*kmsg.ProduceRequest))
		return nil, nil, false // only watched: the cluster handles it as usual
	})
	k.cluster, k.Brokers = c, c.ListenAddrs()
	return nil
}

// codecNames are Kafka's compression codecs, by the number a record batch's attributes carry.
var codecNames = []string{"none", "gzip", "snappy", "lz4", "zstd"}

func (k *Kafka) countCodecs(req *kmsg.ProduceRequest) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			for rest := p.Records; len(rest) > 0; {
				var b kmsg.RecordBatch
				if b.ReadFrom(rest) != nil {
					break
				}
				if codec := int(b.Attributes & 0x07); codec < len(codecNames) {
					k.codecs[codecNames[codec]]++
				}
				rest = rest[min(len(rest), 12+int(b.Length)):] // offset and length, then Length bytes
			}
		}
	}
}

// ProducedCodecs counts the record batches produced to the cluster since it started, by the
// compression codec their producer chose: none, gzip, snappy, lz4 or zstd.
func (k *Kafka) ProducedCodecs() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.codecs)
}

// Close stops the cluster and the test bed's connections to it; unless it is durable, its data is
// gone with it.
func (k *Kafka) Close() {
	k.cluster.Close()
	k.own.CloseIdleConnections()
}

// Restart stops a durable cluster, waits for down, and starts it again from its data on the same
// address: to clients, the broker went away and came back.
func (k *Kafka) Restart(down time.Duration) error {
	if k.opts.Dir == "" {
		return fmt.Errorf("testbed: only a durable cluster (StartDurableKafka) can restart")
	}
	_, port, _ := net.SplitHostPort(k.Brokers[0])
	p, _ := strconv.Atoi(port)
	k.cluster.Close()
	// The test bed's clients would otherwise send their next request on a pooled connection to
	// the broker that went away, and fail with EOF.
	if t, ok := k.clients().(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	time.Sleep(down)
	return k.start(p)
}

// clients is the transport of the test bed's own clients (Writer, Produce, CommittedLag).
func (k *Kafka) clients() kafka.RoundTripper {
	if k.Transport != nil {
		return k.Transport
	}
	return k.own
}

// Writer returns a kafka-go writer for topic that spreads messages over partitions by key
// (round-robin for messages without one) and waits for the broker's acknowledgement.
func (k *Kafka) Writer(topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(k.Brokers...),
		Transport:    k.clients(),
		Topic:        topic,
		Balancer:     &kafka.RoundRobin{},
		BatchSize:    1000,
		BatchBytes:   4 << 20,
		BatchTimeout: 5 * time.Millisecond,
		RequiredAcks: kafka.RequireAll,
	}
}

// Produce writes values to topic, in order, and returns once all are acknowledged.
func (k *Kafka) Produce(ctx context.Context, topic string, values ...[]byte) error {
	w := k.Writer(topic)
	defer w.Close()
	const chunk = 10000
	msgs := make([]kafka.Message, 0, min(chunk, len(values)))
	for i := 0; i < len(values); i += chunk {
		msgs = msgs[:0]
		for _, v := range values[i:min(i+chunk, len(values))] {
			msgs = append(msgs, kafka.Message{Value: v})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("testbed: produce to %s: %w", topic, err)
		}
	}
	return nil
}

// CommittedLag returns how many messages of topic's first partitions partitions the consumer
// group has not committed: the sum of end offset minus committed offset.
func (k *Kafka) CommittedLag(ctx context.Context, group, topic string, partitions int) (int64, error) {
	client := &kafka.Client{Addr: kafka.TCP(k.Brokers...), Timeout: 5 * time.Second, Transport: k.clients()}
	ids := make([]int, 0, partitions)
	reqs := make([]kafka.OffsetRequest, 0, partitions)
	for p := range partitions {
		ids = append(ids, p)
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("testbed: end offsets of %s: %w", topic, err)
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return 0, fmt.Errorf("testbed: offsets of group %s: %w", group, err)
	}
	end := map[int]int64{}
	for _, p := range ends.Topics[topic] {
		end[p.Partition] = p.LastOffset
	}
	var lag int64
	for _, p := range committed.Topics[topic] {
		lag += end[p.Partition] - max(p.CommittedOffset, 0)
	}
	return lag, nil
}
