// Package detect owns the detectors (lingering clients, failure spikes after a rollover, leak-like
// usage, key hygiene), their SQL, the cron scheduler that runs them and the findings they report (in the model of
// package finding, which stores them).
// It reads what ingest stored and the rotation model; it does not notify anyone (alerting does).
package detect
