// Package alertmanager owns forwarding alerts to Prometheus Alertmanagers: the payload of
// POST /api/v2/alerts built from keywatch's alerts (labels, annotations, startsAt and endsAt), and
// one sender per configured URL that posts the latest evaluation's alerts, retries with backoff
// and counts what it did. It does not decide alert states, muting, routes or actions (alerting,
// notify, action): Alertmanager gets what keywatch decided, and Slack approvals and revokes stay
// in keywatch. It reads alerting.Alert, never a detector's types.
//
// Which alerts: every firing alert that is not muted (keywatch's silences and inhibition mute
// every output), and every resolved one for resolvedFor after it resolved, so that Alertmanager
// sends its resolved notification. endsAt follows Prometheus' contract with Alertmanager: an open
// alert ends resendFactor evaluation intervals (at least a minute each) after the post, so it stays
// firing across a few missed posts and expires on its own if keywatch stops; a resolved one ends at
// its resolution time.
package alertmanager
