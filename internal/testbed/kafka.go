package testbed

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an in-process cluster that speaks the Kafka wire protocol on loopback.
type Kafka struct {
	// Brokers are the cluster's bootstrap addresses.
	Brokers []string

	cluster *kfake.Cluster
}

// StartKafka starts a one-broker cluster on a free loopback port with the given topics, each with
// the given number of partitions. It accepts produce batches of up to 16 MiB, so tests can send
// oversized messages.
func StartKafka(partitions int32, topics ...string) (*Kafka, error) {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(partitions, topics...),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "16777216"}),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }),
	)
	if err != nil {
		return nil, fmt.Errorf("testbed: start kafka: %w", err)
	}
	return &Kafka{Brokers: c.ListenAddrs(), cluster: c}, nil
}

// Close stops the cluster; its data is gone with it.
func (k *Kafka) Close() { k.cluster.Close() }

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
