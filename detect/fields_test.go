package detect

import (
	"slices"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// checkFields fails t unless f carries want, the display fields of its evidence (at least one).
func checkFields(t *testing.T, f finding.Finding, want []finding.Field) {
	t.Helper()
	if len(f.Fields) == 0 || !slices.Equal(f.Fields, want) {
		t.Errorf("%s finding about %s: fields\n got %q\nwant %q (those of its evidence)", f.Detector, f.KeyID, f.Fields, want)
	}
}

// TestEvidenceFields: each detector's evidence in words, as notifications show it: plain text
// (attacker-written values such as user agents as they are; outputs escape them), empty values
// left out.
func TestEvidenceFields(t *testing.T) {
	at := time.Date(2026, 11, 20, 11, 30, 0, 0, time.UTC)
	deadline := at.Add(36 * time.Hour)
	expires := at.Add(60 * time.Hour)
	for _, tc := range []struct {
		name string
		got  []finding.Field
		want [][2]string // name, value
	}{
		{name: "lingering client", got: LingeringEvidence{
			OldKeyID: "kid_old", NewKeyID: "kid_new", Step: "started", Since: at.Add(-2 * time.Hour), Deadline: &deadline, TimeLeft: "36h0m0s",
			Caller: Caller{ClientID: "acme", Requests: 40, Failures: 2, FirstSeen: at.Add(-2 * time.Hour), LastSeen: at,
				NewKeyShare: 0.75, NewKeyRequests: 120, TopIPs: []Count{{"203.0.113.5", 30}, {"203.0.113.6", 10}}},
		}.fields(), want: [][2]string{
			{"Rotation", "kid_old → kid_new (started)"},
			{"Caller", "acme"},
			{"Requests on old key", "40 (2 failed) since 2026-11-20 09:30 UTC"},
			{"First / last seen", "2026-11-20 09:30 UTC / 2026-11-20 11:30 UTC"},
			{"On new key", "75% (120 requests)"},
			{"Deadline", "2026-11-21 23:30 UTC (36h0m0s left)"},
			{"Top addresses", "203.0.113.5 (30), 203.0.113.6 (10)"},
		}},
		{name: "lingering callers without a client", got: LingeringEvidence{
			OldKeyID: "kid_old", NewKeyID: "kid_new", Step: "retired", Since: at, Callers: 3, Addresses: 2, UserAgents: 3,
			Caller: Caller{Requests: 9, FirstSeen: at, LastSeen: at, TopUserAgents: []Count{{"*evil* <!here>", 9}}},
		}.fields(), want: [][2]string{
			{"Rotation", "kid_old → kid_new (retired)"},
			{"Caller", "callers without a client"},
			{"Callers without a client", "3 (2 addresses, 3 user agents)"},
			{"Requests on old key", "9 (0 failed) since 2026-11-20 11:30 UTC"},
			{"First / last seen", "2026-11-20 11:30 UTC / 2026-11-20 11:30 UTC"},
			{"On new key", "0% (0 requests)"},
			{"Top user agents", "*evil* <!here> (9)"},
		}},
		{name: "spike", got: SpikeEvidence{
			OldKeyID: "kid_old", NewKeyID: "kid_new", Step: rotation.StepRetired, StepAt: at,
			Short:             SpikeWindow{Requests: 200, Failures: 150, Rate: 0.75, Z: 41.23},
			Long:              SpikeWindow{Requests: 400, Failures: 200, Rate: 0.5, Z: 38.9},
			Baseline:          SpikeBaseline{Rate: 0.0123, Source: "before_step"},
			FailuresByOutcome: map[string]uint64{"revoked_key": 150, "invalid_key": 50, "": 1},
			TopRoutes:         []SpikeCount{{"GET /v1/prices", 120}}, Keyless: SpikeKeyless{Failures: 7},
		}.fields(), want: [][2]string{
			{"Rotation", "kid_old → kid_new, retired 2026-11-20 11:30 UTC"},
			{"Failures, short window", "150 of 200 (75.00%, z 41.2)"},
			{"Failures, long window", "200 of 400 (50.00%, z 38.9)"},
			{"Baseline", "1.23% (before_step)"},
			{"Failures by outcome", "(none) 1, invalid_key 50, revoked_key 150"},
			{"Top routes", "GET /v1/prices (120)"},
			{"Keyless failures", "7"},
		}},
		{name: "hygiene unused", got: HygieneEvidence{Kind: "unused", State: "active", AgeDays: 200.2, LimitDays: 90, Requests: 0, UnusedDays: 120.4}.fields(),
			want: [][2]string{
				{"Problem", "unused"}, {"Key state", "active"}, {"Age", "200 days (limit 90)"}, {"Requests", "0"},
				{"Last used", "never"}, {"Unused for", "120 days"},
			}},
		{name: "hygiene expiring", got: HygieneEvidence{Kind: "expiring", State: "active", AgeDays: 30, LimitDays: 14, Requests: 5,
			ExpiresAt: &expires, DaysLeft: 2.5, LastUsed: at}.fields(),
			want: [][2]string{
				{"Problem", "expiring"}, {"Key state", "active"}, {"Age", "30 days"}, {"Requests", "5"},
				{"Expires", "2026-11-22 23:30 UTC (2.5 days left; reported within 14 days)"}, {"Last used", "2026-11-20 11:30 UTC"},
			}},
		{name: "leak", got: LeakEvidence{KeyState: "active", WindowStart: at.Add(-time.Hour), WindowEnd: at, WindowRequests: 900,
			Signals: []LeakSignal{
				{Kind: leakSignalNewNetwork, Score: 40, Reason: "1 network(s) not seen in the baseline carried at least 10 requests each",
					Places: []LeakPlace{{Network: "AS64501", ASOrg: "Other Net", Countries: []string{"BR", "PT"}, Requests: 15, FirstSeen: at.Add(-40 * time.Minute), LastSeen: at.Add(-25 * time.Minute)}}},
				{Kind: leakSignalNewCountry, Score: 30, Reason: "1 country(ies) not seen",
					Places: []LeakPlace{{Country: "BR", Requests: 15, FirstSeen: at.Add(-40 * time.Minute), LastSeen: at.Add(-25 * time.Minute)}}},
			}}.fields(),
			want: [][2]string{
				{"Window", "2026-11-20 10:30 UTC – 2026-11-20 11:30 UTC, 900 requests"},
				{"Key state", "active"},
				{"Signal new network (+40)", "1 network(s) not seen in the baseline carried at least 10 requests each"},
				{"Signal new country (+30)", "1 country(ies) not seen"},
				{"New networks", "AS64501 (Other Net) BR/PT: 15 requests, 2026-11-20 10:50 UTC – 2026-11-20 11:05 UTC\n" +
					"BR: 15 requests, 2026-11-20 10:50 UTC – 2026-11-20 11:05 UTC"},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make([][2]string, len(tc.got))
			for i, f := range tc.got {
				got[i] = [2]string{f.Name, f.Value}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("fields\n got %q\nwant %q", got, tc.want)
			}
		})
	}
	if got := (LeakEvidence{Signals: []LeakSignal{{Kind: leakSignalNewNetwork}, {Kind: leakSignalFanout}}}).labels(); got[LabelLeakSignals] != "new_network,fanout" {
		t.Errorf("leak labels %v, want signals=new_network,fanout", got)
	}
}
