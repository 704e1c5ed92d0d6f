package main

import (
	"context"
	"fmt"
	"io"

	"github.com/keywatch/keywatch/internal/schema"
)

const migrateDescription = `
Create the configured ClickHouse database if it is missing and apply every schema migration it has
not recorded yet (table keywatch_migrations), then bring table TTLs in line with the retention
settings. Running it again changes nothing. 'keywatch run' does the same at start.`

func migrateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, _, err := parseConfig("migrate", migrateDescription, args, stderr)
	if err != nil {
		return err
	}
	applied, err := schema.Migrate(ctx, cfg.ClickHouse, cfg.ClickHouse.Database, schema.RetentionFrom(cfg.Retention))
	if err != nil {
		return err
	}
	all, _ := schema.Migrations(schema.RetentionFrom(cfg.Retention))
	fmt.Fprintf(stdout, "database %s at schema version %d; applied now: %v; retention changed: %v\n",
		cfg.ClickHouse.Database, len(all), applied.Versions, applied.RetentionChanged)
	return nil
}
