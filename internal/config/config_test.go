package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const validKey = "KEYWATCH_FINGERPRINT_KEY=0123456789abcdef0123"

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keywatch.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadReportsTheFieldPath(t *testing.T) {
	cases := []struct {
		name, yaml string
		env        []string
		want       string
	}{
		{name: "broker port", yaml: "kafka:\n  brokers: [\"x:y\"]\n", want: `kafka.brokers[0]: "x:y": invalid port`},
		{name: "second broker without port", yaml: "kafka:\n  brokers: [\"a:9092\", \"b\"]\n", want: `kafka.brokers[1]: "b": want host:port`},
		{name: "broker from env", env: []string{"KEYWATCH_KAFKA_BROKERS=a:9092,b:0"}, want: `kafka.brokers[1]: "b:0": invalid port`},
		{name: "no fingerprint key", env: []string{"KEYWATCH_FINGERPRINT_KEY="}, want: "fingerprint.key: need at least 16 bytes"},
		{name: "secret in the file", yaml: "fingerprint:\n  key: hunter2hunter2hunter2\n", want: "fingerprint.key: secrets are not read from the config file; set KEYWATCH_FINGERPRINT_KEY"},
		{name: "unknown field", yaml: "kafka:\n  borkers: [\"a:1\"]\n", want: "field borkers not found"},
		{name: "bad duration", yaml: "ingest:\n  batch_max_wait: soon\n", want: `line 2: "soon": not a duration`},
		{name: "duration too short", env: []string{"KEYWATCH_INGEST_BATCH_MAX_WAIT=1ms"}, want: "ingest.batch_max_wait: 1ms: want at least 10ms"},
		{name: "int from env", env: []string{"KEYWATCH_INGEST_BATCH_MAX_ROWS=many"}, want: `ingest.batch_max_rows (from KEYWATCH_INGEST_BATCH_MAX_ROWS): "many": not a whole number`},
		{name: "unknown env", env: []string{"KEYWATCH_KAFKA_BROKER=a:1"}, want: "KEYWATCH_KAFKA_BROKER: no such setting"},
		{name: "database name", env: []string{"KEYWATCH_CLICKHOUSE_DATABASE=key-watch"}, want: `clickhouse.database: "key-watch": want letters`},
		{name: "retention in hours", yaml: "retention:\n  auth_events: 36h\n", want: "retention.auth_events: 36h0m0s: want whole days"},
		{name: "same topics", env: []string{"KEYWATCH_KAFKA_LIFECYCLE_TOPIC=auth-events"}, want: "kafka.lifecycle_topic: \"auth-events\" is also kafka.auth_events_topic"},
		{name: "log level", env: []string{"KEYWATCH_LOG_LEVEL=loud"}, want: `log.level: "loud"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.yaml != "" {
				path = writeFile(t, tc.yaml)
			}
			_, err := Load(path, append([]string{validKey}, tc.env...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadLayersFileEnvAndSecretFiles(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "fp.key")
	if err := os.WriteFile(keyFile, []byte("from-a-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, `
kafka:
  brokers: ["k1:9092", "k2:9092"]
  group_id: kw-prod
clickhouse:
  addr: ["ch:9000"]
  database: kw
fingerprint:
  key_file: `+keyFile+`
ingest:
  batch_max_wait: 250ms
`)
	cfg, err := Load(path, []string{"KEYWATCH_CLICKHOUSE_ADDR=ch1:9000, ch2:9000", "KEYWATCH_CLICKHOUSE_PASSWORD=pw", "PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Kafka.Brokers, []string{"k1:9092", "k2:9092"}) || cfg.Kafka.GroupID != "kw-prod" {
		t.Errorf("kafka = %+v", cfg.Kafka)
	}
	if !slices.Equal(cfg.ClickHouse.Addr, []string{"ch1:9000", "ch2:9000"}) || cfg.ClickHouse.Database != "kw" || cfg.ClickHouse.Password != "pw" {
		t.Errorf("clickhouse = %+v: the environment must override the file", cfg.ClickHouse)
	}
	if cfg.Fingerprint.Key != "from-a-file-0123456789" {
		t.Errorf("fingerprint key %q, want the file's content", cfg.Fingerprint.Key)
	}
	if time.Duration(cfg.Ingest.BatchMaxWait) != 250*time.Millisecond || cfg.Ingest.BatchMaxRows != Default().Ingest.BatchMaxRows {
		t.Errorf("ingest = %+v", cfg.Ingest)
	}
	for _, f := range Describe(cfg) {
		if f.Secret && (f.Value != "(set)" && f.Value != "(not set)") {
			t.Errorf("Describe shows secret %s as %q", f.Path, f.Value)
		}
	}
}

func TestEmptyFileMeansDefaults(t *testing.T) {
	cfg, err := Load(writeFile(t, ""), []string{validKey})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.AuthEventsTopic != "auth-events" || cfg.Retention.AuthEvents.Days() != 90 {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}
