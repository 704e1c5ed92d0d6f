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
		{name: "SASL password in the file", yaml: "kafka:\n  sasl:\n    mechanism: plain\n    password: hunter2\n", want: "kafka.sasl.password: secrets are not read from the config file; set KEYWATCH_KAFKA_SASL_PASSWORD or kafka.sasl.password_file"},
		{name: "SCRAM without password", yaml: "kafka:\n  sasl:\n    mechanism: scram-sha-512\n    username: kw\n", want: "kafka.sasl.password: required with kafka.sasl.mechanism scram-sha-512"},
		{name: "unknown mechanism", env: []string{"KEYWATCH_KAFKA_SASL_MECHANISM=gssapi"}, want: `kafka.sasl.mechanism: "gssapi": want one of`},
		{name: "MSK IAM without TLS", env: []string{"KEYWATCH_KAFKA_SASL_MECHANISM=aws-msk-iam"}, want: "kafka.tls.enabled: aws-msk-iam needs TLS"},
		{name: "Kafka CA without TLS", yaml: "kafka:\n  tls:\n    ca_file: /etc/ca.pem\n", want: "kafka.tls: TLS settings are given but kafka.tls.enabled is false"},
		{name: "ClickHouse CA missing", env: []string{"KEYWATCH_CLICKHOUSE_SECURE=true", "KEYWATCH_CLICKHOUSE_TLS_CA_FILE=/nonexistent/ca.pem"}, want: "clickhouse.tls.ca_file: stat /nonexistent/ca.pem: no such file"},
		{name: "client certificate without key", env: []string{"KEYWATCH_CLICKHOUSE_SECURE=true", "KEYWATCH_CLICKHOUSE_TLS_CERT_FILE=/etc/hostname"}, want: "clickhouse.tls.cert_file: cert_file and key_file go together"},
		{name: "TLS version", yaml: "clickhouse:\n  secure: true\n  tls:\n    min_version: \"1.1\"\n", want: `clickhouse.tls.min_version: "1.1": want 1.2 or 1.3`},
		{name: "listener key without certificate", env: []string{"KEYWATCH_HTTP_TLS_KEY_FILE=/etc/hostname"}, want: "http.tls.cert_file: cert_file and key_file go together"},
		{name: "unknown field", yaml: "kafka:\n  borkers: [\"a:1\"]\n", want: "field borkers not found"},
		{name: "bad duration", yaml: "ingest:\n  batch_max_wait: soon\n", want: `line 2: "soon": not a duration`},
		{name: "duration too short", env: []string{"KEYWATCH_INGEST_BATCH_MAX_WAIT=1ms"}, want: "ingest.batch_max_wait: 1ms: want at least 10ms"},
		{name: "rollups more often than batches", env: []string{"KEYWATCH_INGEST_ROLLUP_INTERVAL=500ms"}, want: "ingest.rollup_interval: 500ms: want ingest.batch_max_wait (1s) to 1m"},
		{name: "int from env", env: []string{"KEYWATCH_INGEST_BATCH_MAX_ROWS=many"}, want: `ingest.batch_max_rows (from KEYWATCH_INGEST_BATCH_MAX_ROWS): "many": not a whole number`},
		{name: "unknown env", env: []string{"KEYWATCH_KAFKA_BROKER=a:1"}, want: "KEYWATCH_KAFKA_BROKER: no such setting"},
		{name: "database name", env: []string{"KEYWATCH_CLICKHOUSE_DATABASE=key-watch"}, want: `clickhouse.database: "key-watch": want letters`},
		{name: "retention in hours", yaml: "retention:\n  auth_events: 36h\n", want: "retention.auth_events: 36h0m0s: want whole days"},
		{name: "same topics", env: []string{"KEYWATCH_KAFKA_LIFECYCLE_TOPIC=auth-events"}, want: "kafka.lifecycle_topic: \"auth-events\" is also kafka.auth_events_topic"},
		{name: "log level", env: []string{"KEYWATCH_LOG_LEVEL=loud"}, want: `log.level: "loud"`},
		{name: "cron without seconds", yaml: "detect:\n  leak:\n    schedule: \"*/5 * * * *\"\n", want: `detect.leak.schedule: "*/5 * * * *": expected exactly 6 fields`},
		{name: "float from env", env: []string{"KEYWATCH_DETECT_SPIKE_MIN_RATE=five"}, want: `detect.spike.min_rate (from KEYWATCH_DETECT_SPIKE_MIN_RATE): "five": not a number`},
		{name: "rate above one", env: []string{"KEYWATCH_DETECT_SPIKE_MIN_RATE=5"}, want: "detect.spike.min_rate: 5: want 0 to 1"},
		{name: "cadence factor below one", env: []string{"KEYWATCH_DETECT_LINGERING_CADENCE_FACTOR=0.5"}, want: "detect.lingering.cadence_factor: 0.5: want 1 to 10"},
		{name: "cadence lookback under a day", env: []string{"KEYWATCH_DETECT_LINGERING_CADENCE_LOOKBACK=2h"}, want: "detect.lingering.cadence_lookback: 2h0m0s: want at least 24h"},
		{name: "severity steps out of order", env: []string{"KEYWATCH_DETECT_LINGERING_WARNING_BEFORE=96h"}, want: "detect.lingering.warning_before: want info_before >= warning_before >= critical_before"},
		{name: "api token in the file", yaml: "http:\n  token: abc\n", want: "http.token: secrets are not read from the config file; set KEYWATCH_HTTP_TOKEN"},
		{name: "short api token", env: []string{"KEYWATCH_HTTP_TOKEN=x"}, want: "http.token: 1 characters, want at least 32"},
		{name: "short read token", env: []string{"KEYWATCH_HTTP_READ_TOKEN=0123456789abcdef"}, want: "http.read_token: 16 characters, want at least 32"},
		{name: "short Slack signing secret", env: []string{"KEYWATCH_SLACK_SIGNING_SECRET=s"}, want: "slack.signing_secret: 1 characters, want at least 32"},
		{name: "short leak report token", env: []string{"KEYWATCH_LEAK_REPORTS_TOKEN=t"}, want: "leak_reports.token: 1 characters, want at least 32"},
		{name: "GitHub keys URL", env: []string{"KEYWATCH_LEAK_REPORTS_GITHUB_KEYS_URL=api.github.com/meta"}, want: `leak_reports.github_keys_url: "api.github.com/meta": want an http(s) URL`},
		{name: "one token for two scopes", env: []string{"KEYWATCH_HTTP_TOKEN=" + strings.Repeat("a", 32), "KEYWATCH_HTTP_READ_TOKEN=" + strings.Repeat("a", 32)}, want: "http.read_token: is the same as http.token"},
		{name: "admin listener on the public port", yaml: "http:\n  admin_listen: \":8466\"\n", want: `http.admin_listen: ":8466" is also http.listen`},
		{name: "read timeout", env: []string{"KEYWATCH_HTTP_READ_TIMEOUT=0s"}, want: "http.read_timeout: 0s: want 1s to 5m"},
		{name: "max connections", env: []string{"KEYWATCH_HTTP_MAX_CONNECTIONS=1"}, want: "http.max_connections: 1: want 16 to 1000000"},
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
	cfg, err := Load(path, []string{"KEYWATCH_CLICKHOUSE_ADDR=ch1:9000, ch2:9000", "KEYWATCH_CLICKHOUSE_PASSWORD=pw", "PATH=/bin",
		"KEYWATCH_DETECT_LEAK_SCHEDULE=@every 30s", "KEYWATCH_DETECT_SPIKE_MIN_Z=5.5"})
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
	if cfg.Detect.Leak.Schedule != "@every 30s" || cfg.Detect.Spike.MinZ != 5.5 {
		t.Errorf("detect = %+v", cfg.Detect)
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

func TestQueriesNeedNoFingerprintKey(t *testing.T) {
	if _, err := Load("", nil); err == nil || !strings.Contains(err.Error(), "fingerprint.key") {
		t.Fatalf("Load without a fingerprint key: %v, want it named", err)
	}
	if _, err := LoadForQueries("", nil); err != nil {
		t.Fatalf("LoadForQueries without a fingerprint key: %v", err)
	}
	if _, err := LoadForQueries("", []string{"KEYWATCH_DETECT_LEAK_WINDOW=0s"}); err == nil || !strings.Contains(err.Error(), "detect.leak.window") {
		t.Fatalf("LoadForQueries must still validate the rest: %v", err)
	}
}

func TestChangedNamesEveryDifferentValueSecretsIncluded(t *testing.T) {
	a := Default()
	b := Default()
	b.Kafka.Brokers = []string{"other:9092"}
	b.Kafka.SASL.Password = "rotated"
	b.Detect.Spike.MinZ = 5
	got := Changed(a, b)
	want := []string{"kafka.brokers", "kafka.sasl.password", "detect.spike.min_z"}
	if !slices.Equal(got, want) {
		t.Fatalf("Changed = %v, want %v", got, want)
	}
	if c := Changed(a, Default()); len(c) != 0 {
		t.Fatalf("Changed of equal configurations = %v", c)
	}
}
