// Package schematest owns the migrated test database: a database of one test's own on the test
// binary's shared ClickHouse server, with keywatch's schema applied at the default retention. It
// does not own the server (internal/testbed) or the schema (internal/schema).
package schematest

import (
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/internal/testbed"
)

// NewDatabase creates a database of t's own on ch, dropped when t ends, migrates it with the
// default configuration's retention and returns its name and a connection to it, closed when t
// ends. t fails at once if the database cannot be made or migrated.
func NewDatabase(t testing.TB, ch *testbed.SharedClickHouse) (string, driver.Conn) {
	t.Helper()
	db := ch.NewDatabase(t)
	cfg := config.Default()
	cfg.ClickHouse.Addr = []string{ch.Addr(t)}
	if _, err := schema.Migrate(t.Context(), cfg.ClickHouse, db, schema.RetentionFrom(cfg.Retention)); err != nil {
		t.Fatalf("migrate test database %s on %s: %v", db, ch.Addr(t), err)
	}
	return db, ch.Conn(t, db)
}
