// Package webhook owns Standard Webhooks messages (https://www.standardwebhooks.com): signing and
// verifying them (the revoke webhook of package action signs with it too), and the outbox of
// notification webhooks: events (alert state changes, digests, "safe to retire", action
// outcomes) stored durably and idempotently by their id in the webhook_deliveries table, one row
// per endpoint and event, and delivered by the leader with retries. It does not decide which
// events happen or what they carry (their producers: alerting, digest, action) and it does not
// own the revoke webhook's delivery (action).
package webhook
