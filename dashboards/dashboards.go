// Package dashboards owns keywatch's Grafana dashboards (JSON for grafana-clickhouse-datasource)
// and their provisioning files, embedded here; it does not run Grafana or deploy them.
package dashboards

import "embed"

// Files holds the dashboards (*.json) and the provisioning YAML (provisioning/...).
//
//go:embed *.json provisioning
var Files embed.FS
