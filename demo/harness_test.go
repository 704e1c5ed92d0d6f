package demo

import (
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

// migratedDB is a fresh database with keywatch's schema, and a connection to it.
func migratedDB(t *testing.T) (string, driver.Conn) {
	t.Helper()
	return schematest.NewDatabase(t, ch)
}
