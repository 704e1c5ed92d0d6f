package config

import (
	"fmt"
	"regexp"
)

// clusterName is what clickhouse.cluster accepts: a name of remote_servers as ClickHouse writes
// them (letters, digits, _ . -), so it can be quoted into ON CLUSTER and Distributed(...) safely.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// validateCluster checks clickhouse.cluster; empty (single server) is valid.
func (c ClickHouse) validateCluster() []error {
	if c.Cluster == "" || clusterName.MatchString(c.Cluster) {
		return nil
	}
	return []error{fmt.Errorf("clickhouse.cluster: %q: want the name of a cluster in the server's remote_servers (letters, digits, _ . -)", c.Cluster)}
}
