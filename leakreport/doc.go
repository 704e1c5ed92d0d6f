// Package leakreport owns POST /v1/leaks: it checks signed (GitHub secret scanning) or bearer reports
// of leaked secrets, matches each secret to a key by its fingerprint and stores matches as critical
// "leak_report" findings. It does not alert or revoke (alerting and action read the findings), and
// it never stores or logs a raw secret.
package leakreport
