// Package ingest owns the path from Kafka to ClickHouse: a consumer group on the authentication and
// key lifecycle topics, decoding and validation of contracts 3.1 and 3.2 (ValidateID for every id
// that is stored; a lifecycle event decodes into rotation.Event, the rotation model's type, also
// for POST /v1/lifecycle), fingerprinting of raw API keys, batching, inserts, the rollups it
// aggregates from the batches (rollup.go; CreateRollupViews and CompareRollups are their
// ClickHouse-only equivalent and its check), offset commits and dead letters, with the secrets
// taken out of what they keep (Redactor). It does not own the schema (internal/schema) nor anything
// that reads what it stored (detect).
package ingest
