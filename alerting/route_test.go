package alerting

import (
	"slices"
	"testing"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// TestRoutingMatchers: routes in the string form of label matchers select groups like the list
// form does, by one of the group's alerts with the group's severity and client.
func TestRoutingMatchers(t *testing.T) {
	routes := config.Slack{DefaultChannel: "#keywatch", Routes: []config.SlackRoute{
		{Channel: "#security", Matchers: []string{`severity="critical"`, `detector=~"leak.*"`}},
		{Channel: "#pay", Matchers: []string{`client_id=~"pay-.*"`, `key_id!="kid_test_*"`}, Continue: true},
		{Channel: "#spikes", Detector: []string{"spike"}, Matchers: []string{`rotation_id="kid_a>*"`}},
	}}
	alert := func(det, key, rotation string, sev finding.Severity) Alert {
		return Alert{Detector: det, KeyID: key, RotationID: rotation, Severity: sev, State: Firing}
	}
	for _, c := range []struct {
		name   string
		client string
		alerts []Alert
		want   []string
	}{
		{"critical leak", "", []Alert{alert("leak_report", "kid_1", "", finding.Critical)}, []string{"#security"}},
		{"warning leak: default", "", []Alert{alert("leak", "kid_1", "", finding.Warning)}, []string{"#keywatch"}},
		{"client, then the spike of a rotation", "pay-eu", []Alert{alert("hygiene", "kid_a", "", finding.Info), alert("spike", "kid_a", "kid_a>kid_b", finding.Info)}, []string{"#pay", "#spikes"}},
		{"a test key is not the client's", "pay-eu", []Alert{alert("hygiene", "kid_test_1", "", finding.Info)}, []string{"#keywatch"}},
		{"another rotation's spike", "", []Alert{alert("spike", "kid_c", "kid_c>kid_d", finding.Info)}, []string{"#keywatch"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := route(routes, Group{ClientID: c.client, Alerts: c.alerts}); !slices.Equal(got, c.want) {
				t.Fatalf("%q, want %q", got, c.want)
			}
		})
	}
}
