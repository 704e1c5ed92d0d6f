package demo

import (
	"context"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.ClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

// migratedDB is a fresh database with keywatch's schema, and a connection to it.
func migratedDB(t *testing.T) (string, driver.Conn) {
	t.Helper()
	db := ch.NewDatabase(t)
	cfg := config.Default()
	cfg.ClickHouse.Addr = []string{ch.Addr}
	if _, err := schema.Migrate(context.Background(), cfg.ClickHouse, db, schema.RetentionFrom(cfg.Retention)); err != nil {
		t.Fatal(err)
	}
	return db, ch.Conn(t, db)
}
