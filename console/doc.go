// Package console owns keywatch's web console: the server-rendered pages under /console/ for the
// people in the middle of a rotation or an incident (alerts, rotations and keys, silences, pending
// actions and their audit), who may see them (sessions from a bearer token, identities from an
// authenticating proxy), and what protects them (CSRF tokens, security headers).
//
// It owns no data: every page reads and every form writes through the owners' exported functions,
// which it takes as small interfaces (Alerts, Silences, Actions, Resources). Approvals go through
// the same Revoker, guardrails and audit as a Slack click. It does not decide which tokens exist
// (package api) nor which routes the listener serves beside /console/ (package app).
package console
