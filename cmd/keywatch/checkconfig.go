package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/keywatch/keywatch/internal/config"
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
	fmt.Fprintf(stdout, "configuration from %s is valid:\n", src)
	for _, f := range config.Describe(cfg) {
		fmt.Fprintf(stdout, "  %-26s %s\n", f.Path, f.Value)
	}
	return nil
}
