// Package action owns actions on keys (revoke now; rollbacks: extend_grace, reactivate): their
// policy and guardrails, the signed Standard Webhooks delivery with retries, approvals and the
// audit of every decision. Across replicas and the CLI over one ClickHouse, only the elected
// leader's loops count revokes against the hourly cap and send (Revoker.Run, and Consider from the
// alerting evaluator); manual requests and approvals, served anywhere, are recorded for the leader
// and followed with Await. It does not decide when an alert fires (alerting), who leads (leader)
// nor show or receive Slack messages (notify). It owns the actions and action_audit tables, which
// others read through ReadSent and ReadAudit; it reads alerts and findings through alerting.Reader
// and finding.Store, and a detector's findings only by their labels (a spike's rotation step).
package action
