// Package alerting owns alerts: it follows each finding's fingerprint through pending, firing and
// resolved, applies silences and inhibition, groups alerts per rotation or key, routes each group
// to channels and hands the result to a Notifier and an Actor, and every alert after each pass to
// its Observers (the Alertmanager output). It does not deliver messages (notify, alertmanager) or
// act on keys (action); it only decides what they are told.
//
// An alert is pending when its fingerprint is first found and fires once it has been found for
// alerting.for of its detector. It resolves when alerting.resolve_after has passed since its last
// finding and its detector's latest run succeeded without finding it: a failed run never resolves
// anything. Findings that are reported rather than scanned for (leak_report, or a detector with no
// runs) resolve on resolve_after alone. A detector whose last alerting.degraded_after runs all failed raises a
// detection_degraded alert of its own, resolved by its next successful run.
//
// Muting: silences (the file's and those of /v1/silences) and the alerting.inhibit rules mute
// alerts; so does one built-in rule: a firing key-wide alert (no client, no rotation) mutes the
// alerts of its key that name a client and are not more severe than it. A muted alert keeps its
// state; it is shown in its group's notification but does not start one. An inhibited alert is not
// acted on; a silenced one is: silences mute notifications, the revoke policies decide revokes.
// Silences last at most alerting.silence_max_duration and must select something (not only *).
//
// Notifications follow Alertmanager's timers per group and channel: group_wait before a group's
// first notification, group_interval between changes, repeat_interval between reminders, and one
// notification when the whole group resolved. What each channel was last told is stored
// (alert_notifications_state), so a restart repeats nothing already told.
//
// An alert carries its latest finding's labels and display fields, which notify shows and action
// reads; it never decodes a detector's evidence. The state machine is one function of the stored
// alerts, the findings and runs read and the time (transition); the Evaluator reads and writes
// around it, and records each alert's changes a person cares about in its history (alert_history:
// pending, firing, resolved, silenced, inhibited, the action's status). alerting owns the alerts,
// alert_notifications_state, silences and alert_history tables; other packages read alerts and
// their history through Reader and silences through SilenceAPI, and findings and runs are read
// through package finding.
package alerting
