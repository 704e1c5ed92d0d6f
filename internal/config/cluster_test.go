package config

import (
	"strings"
	"testing"
)

func TestClickHouseCluster(t *testing.T) {
	cfg, err := Load("", []string{validKey, "KEYWATCH_CLICKHOUSE_CLUSTER=prod-ch.eu_1"})
	if err != nil || cfg.ClickHouse.Cluster != "prod-ch.eu_1" {
		t.Fatalf("cluster %q (%v), want prod-ch.eu_1", cfg.ClickHouse.Cluster, err)
	}
	if cfg, err := Load("", []string{validKey}); err != nil || cfg.ClickHouse.Cluster != "" {
		t.Fatalf("default cluster %q (%v), want none", cfg.ClickHouse.Cluster, err)
	}
	_, err = Load(writeFile(t, "clickhouse:\n  cluster: \"kw`; DROP\"\n"), []string{validKey})
	if err == nil || !strings.Contains(err.Error(), "clickhouse.cluster: \"kw`; DROP\": want the name of a cluster") {
		t.Fatalf("Load error = %v, want clickhouse.cluster refused", err)
	}
}
