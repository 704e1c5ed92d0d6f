// Package readapi owns the read-only /v1 resources: a key (GET /v1/keys/{id}), the rotations
// (GET /v1/rotations, GET /v1/rotations/{id}) and the alerts (GET /v1/alerts) as JSON, their
// query parameters, pagination (limit and an opaque cursor) and the bounds of every list.
// KeyOf, RotationList and RotationOf build the same resources as Go values for a reader in the
// process (the web console); the handlers parse the request, call them and write the JSON.
//
// It reads only through what the owners export: the event store's reads of package ingest, the
// rotation model (rotation.Models), readiness (detect.Lingering) and alerting.Reader. It does not
// register routes or check tokens (app's router and internal/api do), and it writes nothing.
package readapi
