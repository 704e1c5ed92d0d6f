// Package alerting owns alerts: it follows each finding's fingerprint through pending, firing and
// resolved, applies silences and inhibition, groups alerts per rotation or key, routes each group
// to channels and hands the result to a Notifier and an Actor. It does not deliver messages
// (notify) or act on keys (action); it only decides what they are told.
package alerting
