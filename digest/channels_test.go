package digest

import (
	"slices"
	"testing"

	"github.com/keywatch/keywatch/internal/config"
)

// TestChannelsMatchers: a route that selects by client_id in the string form of label matchers
// gets its clients' digest, as one with client globs does; its severity matchers do not apply,
// and one limited to other detectors is passed by.
func TestChannelsMatchers(t *testing.T) {
	routes := []config.SlackRoute{
		{Channel: "C_LEAK", Matchers: []string{`detector=~"leak.*"`, `client_id=~"acme-.*"`}},
		{Channel: "C_ACME", Matchers: []string{`client_id=~"acme-.*"`, `severity="critical"`}, Continue: true},
		{Channel: "C_NOT_TEST", Matchers: []string{`client_id!~".*-test"`}},
		{Channel: "C_ANY", Matchers: []string{`detector="lingering"`}},
	}
	for _, tc := range []struct {
		client string
		want   []string
	}{
		{"acme-web", []string{"C_ALL", "C_ACME", "C_NOT_TEST"}},
		{"acme-test", []string{"C_ALL", "C_ACME"}},
		{"globex", []string{"C_ALL", "C_NOT_TEST"}},
		{"globex-test", []string{"C_ALL"}},
	} {
		d := &Digest{cfg: config.Digest{ClientRoutes: true}, slack: config.Slack{DefaultChannel: "C_ALL", Routes: routes}}
		if got := d.channels(tc.client); !slices.Equal(got, tc.want) {
			t.Errorf("channels(%q) = %v, want %v", tc.client, got, tc.want)
		}
	}
	d := &Digest{cfg: config.Digest{ClientRoutes: true}, slack: config.Slack{Routes: routes[3:]}}
	if d.anyChannel() {
		t.Error("anyChannel: a route that does not select by client gets no digest")
	}
}
