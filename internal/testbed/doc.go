// Package testbed owns the real servers that tests and the demo (`make demo`) run on one machine: an
// embedded ClickHouse server loaded from libchdb.so, whose native port it serves through a relay
// that keeps vanishing clients from crashing it, an in-process Kafka broker (plaintext, or with
// TLS, client certificates and SASL users as a test asks), event producers, and the real tools
// tests run (helm, Alertmanager: Tool builds them from the Go module proxy). It does not own
// keywatch's schema (internal/schema) or what is ingested (ingest).
package testbed
