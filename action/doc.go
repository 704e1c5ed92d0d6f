// Package action owns actions on keys (revoke now; rollbacks: extend_grace, reactivate): their
// policy and guardrails, the signed Standard Webhooks delivery with retries, approvals and the
// audit of every decision. It does not decide when an alert fires (alerting) nor show or receive
// Slack messages (notify).
package action
