// Package notify owns delivering alerting's notifications to Slack exactly once (an outbox in
// ClickHouse, Block Kit rendering, pacing and retries) and the Slack interactions endpoint.
// It does not decide what to notify or when (alerting), nor what an approval does (the Approver).
package notify
