// Package detect owns the detectors (lingering clients, failure spikes after a rollover, leak-like
// usage, key hygiene), their SQL, the jobs that write what they read (IPHours: key_ip_hours), and
// the engine that runs both on cron schedules and hands the findings (the model of package finding)
// to a store. Detectors only read; a job is the one place a write happens.
// Each detector is in files of its own: <name>.go (the detector and the order of its reads),
// <name>_read.go (its SQL and the reads that run it), <name>_judge.go (the judgement of what was
// read, without I/O) and <name>_evidence.go (what a finding records, and its display fields).
// It reads what ingest stored and the rotation model; it does not notify anyone (alerting does).
package detect
