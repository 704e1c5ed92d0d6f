package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIngestReadsCompressedBatches: producers compress their batches with any of Kafka's codecs
// (gateways' log shippers use librdkafka or the Java client, both of which do); every codec is
// consumed and stored once. The producer is franz-go's, not kafka-go's, so the batches are not
// the consumer's own library's.
func TestIngestReadsCompressedBatches(t *testing.T) {
	for _, tc := range []struct {
		codec string
		kgo   kgo.CompressionCodec
	}{
		{"gzip", kgo.GzipCompression()}, {"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()},
	} {
		t.Run(tc.codec, func(t *testing.T) {
			e := newEnv(t, nil)
			e.storesExactlyOnce(t, 10_000, func(ctx context.Context, values [][]byte) error {
				client, err := kgo.NewClient(
					kgo.SeedBrokers(e.kafka.Brokers...),
					kgo.DefaultProduceTopic(authTopic),
					kgo.ProducerBatchCompression(tc.kgo),
					kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
					kgo.ProducerLinger(5*time.Millisecond),
				)
				if err != nil {
					return err
				}
				defer client.Close()
				records := make([]*kgo.Record, len(values))
				for i, v := range values {
					records[i] = &kgo.Record{Value: v}
				}
				return client.ProduceSync(ctx, records...).FirstErr()
			})
			codecs := e.kafka.ProducedCodecs()
			if codecs[tc.codec] == 0 || len(codecs) != 1 {
				t.Errorf("the producer's batches by codec: %v, want %s only", codecs, tc.codec)
			}
		})
	}
}
