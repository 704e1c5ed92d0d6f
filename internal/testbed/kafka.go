package testbed

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an in-process cluster that speaks the Kafka wire protocol on loopback.
type Kafka struct {
	// Brokers are the cluster's bootstrap addresses.
	Brokers []string

	cluster    *kfake.Cluster
	partitions int32
	topics     []string
	dir        string // where a durable cluster keeps its state; "" for none
}

// StartKafka starts a one-broker cluster on a free loopback port with the given topics, each with
// the given number of partitions. It accepts produce batches of up to 16 MiB, so tests can send
// oversized messages.
func StartKafka(partitions int32, topics ...string) (*Kafka, error) {
	k := &Kafka{partitions: partitions, topics: topics}
	return k, k.start(0)
}

// StartDurableKafka is StartKafka with the cluster's messages, topics and group offsets kept in
// dir, so that Restart brings the same cluster back on the same address.
func StartDurableKafka(dir string, partitions int32, topics ...string) (*Kafka, error) {
	k := &Kafka{partitions: partitions, topics: topics, dir: dir}
	return k, k.start(0)
}

func (k *Kafka) start(port int) error {
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.SeedTopics(k.partitions, k.topics...),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "16777216"}),
	}
	if k.dir != "" {
		opts = append(opts, kfake.DataDir(k.dir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("testbed: start kafka: %w", err)
	}
	k.cluster, k.Brokers = c, c.ListenAddrs()
	return nil
}

// Close stops the cluster; unless it is durable, its data is gone with it.
func (k *Kafka) Close() { k.cluster.Close() }

// Restart stops a durable cluster, waits for down, and starts it again from its data on the same
// address: to clients, the broker went away and came back.
func (k *Kafka) Restart(down time.Duration) error {
	if k.dir == "" {
		return fmt.Errorf("testbed: only a durable cluster (StartDurableKafka) can restart")
	}
	_, port, _ := net.SplitHostPort(k.Brokers[0])
	p, _ := strconv.Atoi(port)
	k.cluster.Close()
	time.Sleep(down)
	return k.start(p)
}

// Writer returns a kafka-go writer for topic that spreads messages over partitions by key
// (round-robin for messages without one) and waits for the broker's acknowledgement.
func (k *Kafka) Writer(topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(k.Brokers...),
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
	client := &kafka.Client{Addr: kafka.TCP(k.Brokers...), Timeout: 5 * time.Second}
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
