package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/keywatch/keywatch/internal/broker"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
)

func checkConfigDescription() string {
	var b strings.Builder
	b.WriteString(`
Load the configuration exactly as 'keywatch run' would (the YAML file, then KEYWATCH_* variables,
then secret files), report every invalid value with its path, and print the effective values.
Exit code 0 when valid, 2 when not.

Settings (YAML path, environment variable, default):
`)
	for _, f := range config.Describe(config.Default()) {
		def := f.Value
		if f.Secret {
			def = "secret: from the environment or " + f.Path + "_file only"
		}
		fmt.Fprintf(&b, "  %-26s %-36s %s\n", f.Path, f.Env, def)
		if f.Help != "" {
			fmt.Fprintf(&b, "  %-26s %s\n", "", f.Help)
		}
	}
	return b.String()
}

func checkConfigCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, path, err := parseConfig("check-config", checkConfigDescription(), args, stderr)
	if err != nil {
		return err
	}
	src := "defaults and environment"
	if path != "" {
		src = path
	}
	kafkaConn, err := broker.New(cfg.Kafka)
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintf(stdout, "configuration from %s is valid:\n", src)
	fmt.Fprintf(stdout, "  %-26s %s\n", "kafka connection:", kafkaConn.Mechanism())
	fmt.Fprintf(stdout, "  %-26s %s\n", "clickhouse connection:", clickhouseSecurity(cfg.ClickHouse))
	listener := "HTTP"
	if cfg.HTTP.TLS.Enabled() {
		listener = "HTTPS, certificate " + cfg.HTTP.TLS.CertFile
	}
	fmt.Fprintf(stdout, "  %-26s %s\n", "http listener:", listener)
	for _, w := range append(kafkaConn.Warnings(), schema.Warnings(cfg.ClickHouse)...) {
		fmt.Fprintf(stdout, "  INSECURE: %s\n", w)
	}
	for _, f := range config.Describe(cfg) {
		fmt.Fprintf(stdout, "  %-26s %s\n", f.Path, f.Value)
	}
	return nil
}

// clickhouseSecurity says in a line how keywatch connects to ClickHouse.
func clickhouseSecurity(c config.ClickHouse) string {
	if !c.Secure {
		return "plaintext (clickhouse.secure: false)"
	}
	var parts []string
	switch {
	case c.TLS.InsecureSkipVerify:
		parts = append(parts, "certificate NOT verified")
	case c.TLS.CAFile != "":
		parts = append(parts, "CA "+c.TLS.CAFile)
	default:
		parts = append(parts, "system CAs")
	}
	if c.TLS.CertFile != "" {
		parts = append(parts, "client certificate "+c.TLS.CertFile)
	}
	if c.TLS.ServerName != "" {
		parts = append(parts, "server name "+c.TLS.ServerName)
	}
	return "TLS (" + strings.Join(parts, ", ") + ")"
}
