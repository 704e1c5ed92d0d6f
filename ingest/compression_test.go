package ingest_test

import (
	"context"
	"sync"
	"testing"

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
				// franz-go sends a batch uncompressed when compressing would not shrink it (a batch
				// of one short record, which a linger can cut off on a slow machine). Flushing by
				// hand once every record is buffered makes each partition's records one batch of
				// about 2,500, which every codec shrinks.
				client, err := kgo.NewClient(
					kgo.SeedBrokers(e.kafka.Brokers...),
					kgo.DefaultProduceTopic(authTopic),
					kgo.ProducerBatchCompression(tc.kgo),
					kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
					kgo.ManualFlushing(),
					kgo.MaxBufferedRecords(len(values)+1),
				)
				if err != nil {
					return err
				}
				defer client.Close()
				var wg sync.WaitGroup
				var mu sync.Mutex
				var first error
				for _, v := range values {
					wg.Add(1)
					client.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
						defer wg.Done()
						mu.Lock()
						defer mu.Unlock()
						if first == nil {
							first = err
						}
					})
				}
				if err := client.Flush(ctx); err != nil {
					return err
				}
				wg.Wait()
				return first
			})
			codecs := e.kafka.ProducedCodecs()
			if codecs[tc.codec] == 0 || len(codecs) != 1 {
				t.Errorf("the producer's batches by codec: %v, want %s only", codecs, tc.codec)
			}
		})
	}
}
