// Package deploy owns keywatch's deployment files (Dockerfile, docker compose stack, Helm chart,
// systemd unit) and embeds them for tests and tools. It does not build, install or run anything.
package deploy

import "embed"

// Files holds the deployment files by their path under deploy/ (e.g. "helm/keywatch/values.yaml").
//
//go:embed Dockerfile docker-compose.yaml systemd all:helm
var Files embed.FS
