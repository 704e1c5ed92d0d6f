package testbed

import (
	"context"
	"testing"
)

var ch *ClickHouse

func TestMain(m *testing.M) { Main(m, &ch) }

func TestClickHouseAnswersQueries(t *testing.T) {
	db := ch.NewDatabase(t)
	conn := ch.Conn(t, db)
	var v string
	if err := conn.QueryRow(context.Background(), "SELECT version()").Scan(&v); err != nil {
		t.Fatal(err)
	}
	t.Logf("clickhouse %s at %s", v, ch.Addr)
}
