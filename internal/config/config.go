// Package config owns keywatch's configuration: the YAML file, its KEYWATCH_* environment
// overrides, secrets from env or files, defaults and validation. It does not act on any value.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keywatch/keywatch/ingest/mapping"
)

// Config is the whole of keywatch's configuration. Every field's path (e.g. kafka.brokers) is its
// YAML key; KEYWATCH_ plus the path in upper case with dots as underscores overrides it
// (KEYWATCH_KAFKA_BROKERS=a:9092,b:9092). Fields marked secret are read only from the
// environment or from the file named by their *_file sibling.
type Config struct {
	Kafka       Kafka       `yaml:"kafka"`
	ClickHouse  ClickHouse  `yaml:"clickhouse"`
	Ingest      Ingest      `yaml:"ingest"`
	Geo         Geo         `yaml:"geo"`
	Fingerprint Fingerprint `yaml:"fingerprint"`
	Retention   Retention   `yaml:"retention"`
	HTTP        HTTP        `yaml:"http"`
	Detect      Detect      `yaml:"detect"`
	Alerting    Alerting    `yaml:"alerting"`
	Slack       Slack       `yaml:"slack"`
	Revoke      Revoke      `yaml:"revoke"`
	Rollback    Rollback    `yaml:"rollback"`
	LeakReports LeakReports `yaml:"leak_reports"`
	Leader      Leader      `yaml:"leader"`
	Digest      Digest      `yaml:"digest"`
	Webhooks    []Webhook   `yaml:"webhooks" help:"signed notification webhooks (docs/webhooks.md): a list of endpoints, each with name, url, secret_file, events, timeout, max_age (YAML only)"`
	Log         Log         `yaml:"log"`

	// Alertmanager is the optional output to Prometheus Alertmanagers, beside Slack.
	Alertmanager Alertmanager `yaml:"alertmanager"`
	// Console is the web console on the HTTP listener.
	Console Console `yaml:"console"`
}

// Kafka says where authentication and lifecycle events are read from.
type Kafka struct {
	Brokers         []string `yaml:"brokers" help:"bootstrap brokers, host:port"`
	GroupID         string   `yaml:"group_id" help:"consumer group shared by keywatch replicas"`
	AuthEventsTopic string   `yaml:"auth_events_topic" help:"topic of authentication events (contract 3.1)"`
	LifecycleTopic  string   `yaml:"lifecycle_topic" help:"topic of key lifecycle events (contract 3.2)"`
	StartFrom       string   `yaml:"start_from" help:"where a new group starts: earliest or latest"`
	SessionTimeout  Duration `yaml:"session_timeout" help:"a replica that stops heartbeating loses its partitions after this long"`
	TLS             KafkaTLS `yaml:"tls"`
	SASL            SASL     `yaml:"sasl"`
}

// KafkaTLS switches TLS on for every connection to the brokers.
type KafkaTLS struct {
	Enabled bool `yaml:"enabled" help:"connect to the brokers with TLS (the SSL and SASL_SSL listeners)"`
	TLS     `yaml:",inline"`
}

// TLS is how a client verifies a server and proves itself to it. Used only where TLS is on
// (kafka.tls.enabled, clickhouse.secure).
type TLS struct {
	CAFile             string `yaml:"ca_file" help:"PEM file of the CAs that sign the server's certificate; empty: the system's roots"`
	CertFile           string `yaml:"cert_file" help:"PEM client certificate, for servers that require one (mTLS)"`
	KeyFile            string `yaml:"key_file" help:"PEM private key of cert_file"`
	ServerName         string `yaml:"server_name" help:"name the server's certificate must carry; empty: the host dialed"`
	MinVersion         string `yaml:"min_version" help:"lowest TLS version accepted: 1.2 or 1.3"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" help:"accept any server certificate (testing only: logged as a warning at start)"`
}

// SASL is how keywatch authenticates to the brokers.
type SASL struct {
	Mechanism    string `yaml:"mechanism" help:"none, plain, scram-sha-256, scram-sha-512 or aws-msk-iam"`
	Username     string `yaml:"username" help:"plain and scram: the user"`
	Password     string `yaml:"password" secret:"true"`
	PasswordFile string `yaml:"password_file" help:"file holding the SASL password"`
	AWSRegion    string `yaml:"aws_region" help:"aws-msk-iam: the cluster's region; empty: AWS_REGION from the AWS environment; credentials come from the AWS default chain (environment, IRSA, instance role)"`
}

// ClickHouse says where events are stored and detectors read.
type ClickHouse struct {
	Addr         []string `yaml:"addr" help:"native protocol addresses, host:port"`
	Database     string   `yaml:"database" help:"database keywatch owns; created by migrate"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password" secret:"true"`
	PasswordFile string   `yaml:"password_file" help:"file holding the password"`
	DialTimeout  Duration `yaml:"dial_timeout"`
	Cluster      string   `yaml:"cluster" help:"ClickHouse cluster name; set: tables are Replicated and Distributed ON CLUSTER"`
	Secure       bool     `yaml:"secure" help:"connect with TLS (ClickHouse Cloud and secure native ports, usually 9440)"`
	TLS          TLS      `yaml:"tls"`
}

// Ingest says how authentication events are read and bounds the batches written to ClickHouse.
type Ingest struct {
	Mapping           string                  `yaml:"mapping" help:"log shape of the auth events topic: keywatch (contract 3.1), kong, envoy, aws-apigateway, tyk, nginx, or a name under ingest.mappings"`
	Mappings          map[string]mapping.Spec `yaml:"mappings" help:"your own log shapes: contract field -> {path, value, format, strip_port, values, absent} (YAML only)"`
	BatchMaxRows      int                     `yaml:"batch_max_rows" help:"flush a batch at this many messages"`
	BatchMaxWait      Duration                `yaml:"batch_max_wait" help:"flush a batch at least this often"`
	RollupInterval    Duration                `yaml:"rollup_interval" help:"store the rollups of the batches stored meanwhile at least this often (their offsets are committed then)"`
	InsertConcurrency int                     `yaml:"insert_concurrency" help:"batches stored at once, each of its own partitions"`
	MaxMessageBytes   int                     `yaml:"max_message_bytes" help:"larger messages go to dead_letters"`
	MaxEventAge       Duration                `yaml:"max_event_age" help:"older events go to dead_letters; 0s accepts any age"`
	MaxEventSkew      Duration                `yaml:"max_event_skew" help:"events further in the future go to dead_letters; 0s accepts any"`
}

// Geo names the MaxMind-format MMDB files that add network and country to each event.
type Geo struct {
	ASNDatabase     string `yaml:"asn_database" help:"GeoLite2-ASN (or GeoIP2-ISP) .mmdb file; empty: no ASN"`
	CountryDatabase string `yaml:"country_database" help:"GeoLite2-Country (or -City) .mmdb file; empty: no country"`
}

// Fingerprint is the secret that turns raw API keys into keyed fingerprints (HMAC-SHA256).
type Fingerprint struct {
	Key     string `yaml:"key" secret:"true"`
	KeyFile string `yaml:"key_file" help:"file holding the fingerprint key"`
}

// Retention says how long stored data lives.
type Retention struct {
	AuthEvents  Duration `yaml:"auth_events" help:"raw authentication events, whole days"`
	Rollups     Duration `yaml:"rollups" help:"per-minute rollups, whole days"`
	DeadLetters Duration `yaml:"dead_letters" help:"dead letters, whole days"`
}

// HTTP is the listener of the /v1 API, leak reports and Slack interactions, and the admin
// listener of /metrics, /healthz and /readyz.
type HTTP struct {
	Listen         string    `yaml:"listen" help:"address of the HTTP listener (/v1, /slack/interactions, /-/reload, /-/config); empty disables it"`
	AdminListen    string    `yaml:"admin_listen" help:"address of the admin listener (/metrics, /healthz, /readyz); empty serves them on http.listen, where /readyz names failing checks only to a bearer token"`
	Token          string    `yaml:"token" secret:"true"`
	TokenFile      string    `yaml:"token_file" help:"file holding the admin bearer token: every /v1 call, revokes, rollbacks, POST /-/reload, GET /-/config; without a token they answer 403"`
	WriteToken     string    `yaml:"write_token" secret:"true"`
	WriteTokenFile string    `yaml:"write_token_file" help:"file holding a bearer token for reads, POST /v1/lifecycle and silences, but not revokes, rollbacks or /-/ (optional)"`
	ReadToken      string    `yaml:"read_token" secret:"true"`
	ReadTokenFile  string    `yaml:"read_token_file" help:"file holding a bearer token for GET requests only (optional)"`
	ReadTimeout    Duration  `yaml:"read_timeout" help:"longest a request's headers and body may take to arrive; a slower client is cut off"`
	IdleTimeout    Duration  `yaml:"idle_timeout" help:"an idle keep-alive connection is closed after this long"`
	MaxConnections int       `yaml:"max_connections" help:"connections each listener holds at once; more wait in the kernel's queue"`
	TLS            ServerTLS `yaml:"tls"`
}

// MinSecretLength is the shortest bearer token or signing secret keywatch accepts: 32 characters,
// what "openssl rand -hex 16" prints and what Slack issues as a signing secret.
const MinSecretLength = 32

// ServerTLS makes the HTTP listener serve HTTPS; the files are read again when they change.
type ServerTLS struct {
	CertFile string `yaml:"cert_file" help:"PEM certificate (chain) the listener serves; set with key_file: HTTPS"`
	KeyFile  string `yaml:"key_file" help:"PEM private key of cert_file"`
}

// Detect configures the detectors: each runs on its own cron schedule (with seconds:
// "sec min hour dom month dow", or @every 5m); an empty schedule disables it.
type Detect struct {
	Lingering Lingering `yaml:"lingering"`
	Spike     Spike     `yaml:"spike"`
	Leak      Leak      `yaml:"leak"`
	Hygiene   Hygiene   `yaml:"hygiene"`
}

// Lingering finds callers still using a retiring or retired key.
type Lingering struct {
	Schedule        string   `yaml:"schedule" help:"cron schedule with seconds; empty disables the detector"`
	InfoBefore      Duration `yaml:"info_before" help:"a lingering caller is info this long before the grace deadline"`
	WarningBefore   Duration `yaml:"warning_before" help:"... warning this long before it"`
	CriticalBefore  Duration `yaml:"critical_before" help:"... critical this long before it (and always after it)"`
	QuietFor        Duration `yaml:"quiet_for" help:"the least time a caller must not have succeeded with the old key to count as gone from it; a caller active hour after hour that moved to a later key needs only this"`
	AfterRetired    Duration `yaml:"after_retired" help:"how long after retirement or revocation use of the old key is still looked for"`
	CadenceFactor   float64  `yaml:"cadence_factor" help:"a caller counts as gone from the old key once it has not succeeded with it for this many times its usual gap between active hours (at least quiet_for; at most the grace period once it was seen on a later key)"`
	CadenceLookback Duration `yaml:"cadence_lookback" help:"how far back each caller's rhythm is learned from its hours on the rotation's keys"`
}

// Spike finds authentication failures that rise after a rotation step.
type Spike struct {
	Schedule    string   `yaml:"schedule" help:"cron schedule with seconds; empty disables the detector"`
	AfterStep   Duration `yaml:"after_step" help:"how long after a rotation step (started, retired, revoked) it is watched"`
	Baseline    Duration `yaml:"baseline" help:"the window before the step that each client's failure rate is compared with"`
	ShortWindow Duration `yaml:"short_window" help:"the recent window that must show the rise"`
	LongWindow  Duration `yaml:"long_window" help:"the longer window (from the step at most) that must show it too"`
	MinZ        float64  `yaml:"min_z" help:"significance of the rise: each window's one-sided binomial p-value against the baseline rate must be within that of this z-score (4: 3.2e-5)"`
	MinFailures int      `yaml:"min_failures" help:"failures in each window, at least; a window with fewer is judged by the window since the step instead (a small client's failures add up there)"`
	MinRate     float64  `yaml:"min_rate" help:"failure rate in each window, at least (0..1)"`
}

// Leak scores per-key signals of leak-like use and fires when their sum reaches a threshold.
type Leak struct {
	Schedule               string   `yaml:"schedule" help:"cron schedule with seconds; empty disables the detector"`
	Window                 Duration `yaml:"window" help:"the recent window that is judged"`
	Baseline               Duration `yaml:"baseline" help:"the history before the window it is judged against"`
	MinRequests            int      `yaml:"min_requests" help:"requests from a new network or country in the window before it counts"`
	FanoutMinZ             float64  `yaml:"fanout_min_z" help:"robust z-score (median/MAD) of the hour's distinct IPs against the key's hourly baseline"`
	ScoreNewNetwork        float64  `yaml:"score_new_network" help:"score of traffic from a network (ASN, else /24 or /48) not seen in the baseline"`
	ScoreNewCountry        float64  `yaml:"score_new_country" help:"score of traffic from a country not seen in the baseline"`
	ScoreFanout            float64  `yaml:"score_fanout" help:"score of a distinct-IP count far above the key's baseline"`
	ScoreRevokedNewNetwork float64  `yaml:"score_revoked_new_network" help:"score of a revoked key tried from a network it never used"`
	ScoreImpossibleTravel  float64  `yaml:"score_impossible_travel" help:"score of a hop between two countries too far apart for the time between (any two for a key whose history shows one place at a time); the default fires alone"`
	WarningScore           float64  `yaml:"warning_score" help:"a key's summed score fires a warning from here"`
	CriticalScore          float64  `yaml:"critical_score" help:"... and a critical finding from here"`
	NewFor                 Duration `yaml:"new_for" help:"a network or country stays new (out of the key's baseline) this long after the key first used it; while new, min_requests since then over several hours make it count"`
	AllowedLateness        Duration `yaml:"allowed_lateness" help:"an hour's distinct IPs are finalized for the fan-out baseline only this long after the hour ended; later arrivals are finalized again by the job's next runs"`

	// Scope probing (detect/leak_scope.go): validated in detect.go.
	RouteScopes             map[string]string `yaml:"route_scopes" help:"route pattern ([METHOD ]glob, * matches anything) -> the scope(s) it needs, comma-separated, any one grants it; empty disables scope probing (YAML only)"`
	ScoreScopeProbing       float64           `yaml:"score_scope_probing" help:"score of forbidden requests to routes outside the key's scopes (from its lifecycle events)"`
	ScopeProbingMinRequests int               `yaml:"scope_probing_min_requests" help:"forbidden requests outside the key's scopes in the window before they count"`
	ScopeHistory            Duration          `yaml:"scope_history" help:"the key's forbidden history before the window that scope probing is judged against (and hygiene reports standing refusals over); 0s: none, every forbidden request outside the scopes counts"`
	ScopeStandingDays       int               `yaml:"scope_standing_days" help:"days (24 h periods) of scope_history a route must have been refused on, from the same callers at its usual rate, to be a standing misconfiguration: left out of scope probing, reported once by hygiene"`
}

// Hygiene reports keys that break the rotation policy, once a day by default.
type Hygiene struct {
	Schedule       string   `yaml:"schedule" help:"cron schedule with seconds; empty disables the detector"`
	MaxKeyAge      Duration `yaml:"max_key_age" help:"an active key older than this with no rotation started is reported"`
	UnusedAfter    Duration `yaml:"unused_after" help:"an active key not used for this long is reported"`
	ExpiringWithin Duration `yaml:"expiring_within" help:"an active key whose expires_at (lifecycle events) is this close, with no rotation started, is reported; 0s: never"`
}

// Log sets structured logging.
type Log struct {
	Level  string `yaml:"level" help:"debug, info, warn or error"`
	Format string `yaml:"format" help:"json or text"`
}

// Default returns the configuration used where the file and environment say nothing.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Brokers:         []string{"localhost:9092"},
			GroupID:         "keywatch",
			AuthEventsTopic: "auth-events",
			LifecycleTopic:  "key-lifecycle",
			StartFrom:       "earliest",
			SessionTimeout:  Duration(10 * time.Second),
			SASL:            SASL{Mechanism: SASLNone},
		},
		ClickHouse: ClickHouse{
			Addr:        []string{"localhost:9000"},
			Database:    "keywatch",
			Username:    "default",
			DialTimeout: Duration(10 * time.Second),
		},
		Ingest: Ingest{
			Mapping:           "keywatch",
			BatchMaxRows:      50000,
			InsertConcurrency: 1,
			BatchMaxWait:      Duration(time.Second),
			RollupInterval:    Duration(time.Second),
			MaxMessageBytes:   256 << 10,
			MaxEventAge:       Duration(30 * 24 * time.Hour),
			MaxEventSkew:      Duration(time.Hour),
		},
		Retention: Retention{
			AuthEvents:  Duration(90 * 24 * time.Hour),
			Rollups:     Duration(400 * 24 * time.Hour),
			DeadLetters: Duration(30 * 24 * time.Hour),
		},
		HTTP: HTTP{
			Listen: ":8466", ReadTimeout: Duration(10 * time.Second), IdleTimeout: Duration(60 * time.Second),
			MaxConnections: 1024,
		},
		Detect: Detect{
			Lingering: Lingering{
				Schedule:   "0 */5 * * * *",
				InfoBefore: Duration(72 * time.Hour), WarningBefore: Duration(24 * time.Hour), CriticalBefore: Duration(time.Hour),
				QuietFor: Duration(time.Hour), AfterRetired: Duration(7 * 24 * time.Hour),
				CadenceFactor: 1.5, CadenceLookback: Duration(30 * 24 * time.Hour),
			},
			Spike: Spike{
				Schedule:  "30 * * * * *",
				AfterStep: Duration(24 * time.Hour), Baseline: Duration(7 * 24 * time.Hour),
				ShortWindow: Duration(10 * time.Minute), LongWindow: Duration(time.Hour),
				MinZ: 4, MinFailures: 5, MinRate: 0.05,
			},
			Leak: Leak{
				Schedule: "0 * * * * *",
				Window:   Duration(time.Hour), Baseline: Duration(30 * 24 * time.Hour),
				MinRequests: 10, FanoutMinZ: 6,
				ScoreNewNetwork: 40, ScoreNewCountry: 30, ScoreFanout: 40, ScoreRevokedNewNetwork: 60, ScoreImpossibleTravel: 60,
				WarningScore: 60, CriticalScore: 100,
				NewFor: Duration(48 * time.Hour), AllowedLateness: Duration(10 * time.Minute),
				ScoreScopeProbing: 60, ScopeProbingMinRequests: 5,
				ScopeHistory: Duration(14 * 24 * time.Hour), ScopeStandingDays: 3,
			},
			Hygiene: Hygiene{
				Schedule:  "0 0 6 * * *",
				MaxKeyAge: Duration(90 * 24 * time.Hour), UnusedAfter: Duration(30 * 24 * time.Hour),
				ExpiringWithin: Duration(14 * 24 * time.Hour),
			},
		},
		Alerting: defaultAlerting(),
		Slack:    defaultSlack(),
		Revoke:   defaultRevoke(),
		Rollback: defaultRollback(),
		Leader:   defaultLeader(),
		Digest:   defaultDigest(),
		Log:      Log{Level: "info", Format: "json"},

		Alertmanager: defaultAlertmanager(),
		Console:      defaultConsole(),
	}
}

// Load reads the YAML file at path (none when path is empty) over the defaults, applies the
// environment overrides and secret files, and validates the result. Every problem is reported
// with the field's path.
func Load(path string, environ []string) (Config, error) { return load(path, environ, true) }

// LoadForQueries is Load for commands that only query ClickHouse (detect, readiness): the
// fingerprint key, which only ingest needs, may be missing.
func LoadForQueries(path string, environ []string) (Config, error) { return load(path, environ, false) }

func load(path string, environ []string, ingest bool) (Config, error) {
	cfg := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := decodeYAML(raw, &cfg); err != nil {
			return cfg, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	var errs []error
	errs = append(errs, applyEnv(&cfg, env)...)
	errs = append(errs, readSecretFiles(&cfg)...)
	errs = append(errs, cfg.validate(ingest)...)
	if len(errs) > 0 {
		return cfg, &Error{Problems: errs}
	}
	return cfg, nil
}

// Error lists every problem found in a configuration, one per line.
type Error struct{ Problems []error }

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return "invalid configuration:\n  " + strings.Join(lines, "\n  ")
}

func decodeYAML(raw []byte, cfg *Config) error {
	// Secrets never come from the file: reject them before decoding so the value is not kept.
	var probe map[string]any
	if err := yaml.Unmarshal(raw, &probe); err == nil {
		for _, path := range secretPaths() {
			if present(probe, strings.Split(path, ".")) {
				return fmt.Errorf("%s: secrets are not read from the config file; set %s or %s_file",
					path, envName(path), path)
			}
		}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		return err
	}
	return nil
}

// present says whether the decoded YAML m has a value at the path of keys.
func present(m map[string]any, keys []string) bool {
	v, ok := m[keys[0]]
	if !ok || len(keys) == 1 {
		return ok
	}
	sub, _ := v.(map[string]any)
	return sub != nil && present(sub, keys[1:])
}

func readSecretFiles(cfg *Config) []error {
	var errs []error
	read := func(path, file string, into *string) {
		if file == "" || *into != "" {
			return
		}
		b, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s_file: %w", path, err))
			return
		}
		*into = strings.TrimSpace(string(b))
	}
	read("clickhouse.password", cfg.ClickHouse.PasswordFile, &cfg.ClickHouse.Password)
	read("kafka.sasl.password", cfg.Kafka.SASL.PasswordFile, &cfg.Kafka.SASL.Password)
	read("fingerprint.key", cfg.Fingerprint.KeyFile, &cfg.Fingerprint.Key)
	read("http.token", cfg.HTTP.TokenFile, &cfg.HTTP.Token)
	read("http.write_token", cfg.HTTP.WriteTokenFile, &cfg.HTTP.WriteToken)
	read("http.read_token", cfg.HTTP.ReadTokenFile, &cfg.HTTP.ReadToken)
	read("slack.token", cfg.Slack.TokenFile, &cfg.Slack.Token)
	read("slack.signing_secret", cfg.Slack.SigningSecretFile, &cfg.Slack.SigningSecret)
	read("revoke.webhook_secret", cfg.Revoke.WebhookSecretFile, &cfg.Revoke.WebhookSecret)
	read("leak_reports.token", cfg.LeakReports.TokenFile, &cfg.LeakReports.Token)
	read("alertmanager.password", cfg.Alertmanager.PasswordFile, &cfg.Alertmanager.Password)
	read("console.session_key", cfg.Console.SessionKeyFile, &cfg.Console.SessionKey)
	for i := range cfg.Webhooks {
		w := &cfg.Webhooks[i]
		read(fmt.Sprintf("webhooks[%d].secret", i), w.SecretFile, &w.Secret)
	}
	return errs
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *Config) validate(ingest bool) []error {
	var errs []error
	bad := func(path string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	hostports := func(path string, addrs []string) {
		if len(addrs) == 0 {
			bad(path, "at least one host:port is required")
		}
		for i, a := range addrs {
			if err := checkHostPort(a); err != nil {
				bad(fmt.Sprintf("%s[%d]", path, i), "%q: %v", a, err)
			}
		}
	}
	hostports("kafka.brokers", c.Kafka.Brokers)
	for path, v := range map[string]string{
		"kafka.group_id": c.Kafka.GroupID, "kafka.auth_events_topic": c.Kafka.AuthEventsTopic,
		"kafka.lifecycle_topic": c.Kafka.LifecycleTopic,
	} {
		if v == "" {
			bad(path, "must not be empty")
		}
	}
	if c.Kafka.AuthEventsTopic != "" && c.Kafka.AuthEventsTopic == c.Kafka.LifecycleTopic {
		bad("kafka.lifecycle_topic", "%q is also kafka.auth_events_topic; the two streams need their own topics", c.Kafka.LifecycleTopic)
	}
	if c.Kafka.StartFrom != "earliest" && c.Kafka.StartFrom != "latest" {
		bad("kafka.start_from", "%q: want earliest or latest", c.Kafka.StartFrom)
	}
	if c.Kafka.SessionTimeout < Duration(6*time.Second) || c.Kafka.SessionTimeout > Duration(5*time.Minute) {
		bad("kafka.session_timeout", "%s: want 6s to 5m (the broker's group.min/max.session.timeout.ms)", c.Kafka.SessionTimeout)
	}
	errs = append(errs, c.Kafka.validateSecurity()...)
	hostports("clickhouse.addr", c.ClickHouse.Addr)
	errs = append(errs, c.ClickHouse.TLS.validate("clickhouse.tls", c.ClickHouse.Secure, "clickhouse.secure")...)
	if !identifier.MatchString(c.ClickHouse.Database) {
		bad("clickhouse.database", "%q: want letters, digits and underscores, not starting with a digit", c.ClickHouse.Database)
	}
	if c.ClickHouse.DialTimeout <= 0 {
		bad("clickhouse.dial_timeout", "must be positive")
	}
	if c.Ingest.BatchMaxRows < 1 || c.Ingest.BatchMaxRows > 1_000_000 {
		bad("ingest.batch_max_rows", "%d: want 1 to 1000000", c.Ingest.BatchMaxRows)
	}
	if c.Ingest.InsertConcurrency < 1 || c.Ingest.InsertConcurrency > 16 {
		bad("ingest.insert_concurrency", "%d: want 1 to 16", c.Ingest.InsertConcurrency)
	}
	if c.Ingest.BatchMaxWait < Duration(10*time.Millisecond) {
		bad("ingest.batch_max_wait", "%s: want at least 10ms", c.Ingest.BatchMaxWait)
	}
	if c.Ingest.RollupInterval < c.Ingest.BatchMaxWait || c.Ingest.RollupInterval > Duration(time.Minute) {
		bad("ingest.rollup_interval", "%s: want ingest.batch_max_wait (%s) to 1m", c.Ingest.RollupInterval, c.Ingest.BatchMaxWait)
	}
	if c.Ingest.MaxMessageBytes < 1024 {
		bad("ingest.max_message_bytes", "%d: want at least 1024", c.Ingest.MaxMessageBytes)
	}
	if c.Ingest.MaxEventAge < 0 || c.Ingest.MaxEventSkew < 0 {
		bad("ingest.max_event_age", "limits must not be negative")
	}
	for name, spec := range c.Ingest.Mappings {
		if _, ok := mapping.Builtin(name); ok {
			bad("ingest.mappings."+name, "%q is a built-in mapping; give yours another name", name)
			continue
		}
		if _, err := mapping.Compile("ingest.mappings."+name, spec); err != nil {
			errs = append(errs, err)
		}
	}
	if _, builtin := mapping.Builtin(c.Ingest.Mapping); !builtin && c.Ingest.Mappings[c.Ingest.Mapping] == nil {
		bad("ingest.mapping", "%q is neither built in (%s) nor defined under ingest.mappings", c.Ingest.Mapping, strings.Join(mapping.BuiltinNames(), ", "))
	}
	for path, file := range map[string]string{"geo.asn_database": c.Geo.ASNDatabase, "geo.country_database": c.Geo.CountryDatabase} {
		if file == "" {
			continue
		}
		if _, err := os.Stat(file); err != nil {
			bad(path, "%v", err)
		}
	}
	if ingest && len(c.Fingerprint.Key) < 16 {
		bad("fingerprint.key", "need at least 16 bytes from %s or fingerprint.key_file (raw API keys are stored only as HMAC fingerprints under this key)", envName("fingerprint.key"))
	}
	for path, d := range map[string]Duration{
		"retention.auth_events": c.Retention.AuthEvents, "retention.rollups": c.Retention.Rollups,
		"retention.dead_letters": c.Retention.DeadLetters,
	} {
		if d < Duration(24*time.Hour) || time.Duration(d)%(24*time.Hour) != 0 {
			bad(path, "%s: want whole days, at least 24h (e.g. 2160h for 90 days)", d)
		}
	}
	errs = append(errs, c.HTTP.validate()...)
	errs = append(errs, c.Detect.validate()...)
	errs = append(errs, c.Alerting.validate()...)
	errs = append(errs, c.Slack.validate()...)
	errs = append(errs, c.Alertmanager.validate()...)
	errs = append(errs, c.Console.validate(c.HTTP.Listen)...)
	errs = append(errs, c.Revoke.validate()...)
	errs = append(errs, c.Rollback.validate()...)
	errs = append(errs, c.compileSelectors()...)
	errs = append(errs, c.LeakReports.validate()...)
	errs = append(errs, c.Leader.validate()...)
	errs = append(errs, c.ClickHouse.validateCluster()...)
	errs = append(errs, c.Digest.validate()...)
	errs = append(errs, validateWebhooks(c.Webhooks)...)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format", "%q: want json or text", c.Log.Format)
	}
	sortErrors(errs)
	return errs
}

func checkHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" {
		return errors.New("missing host")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return errors.New("invalid port")
	}
	return nil
}

// Days returns d in whole days, as the schema's TTL clauses need.
func (d Duration) Days() int { return int(time.Duration(d) / (24 * time.Hour)) }

// MappingSpec returns the spec of the configured ingest.mapping: a built-in one or the user's.
func (i Ingest) MappingSpec() mapping.Spec {
	if spec, ok := mapping.Builtin(i.Mapping); ok {
		return spec
	}
	return i.Mappings[i.Mapping]
}
