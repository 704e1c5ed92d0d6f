package console

import (
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/readapi"
)

func TestBurnDownChartPlacesEachClientsShare(t *testing.T) {
	from := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	b := readapi.BurnDown{Step: "hour", From: from, To: from.Add(4 * time.Hour), Clients: []readapi.ClientBurnDown{
		{ClientID: "acme-web", NewKeyShare: 1, Points: []readapi.BurnDownPoint{{At: from, NewKeyShare: 0}, {At: from.Add(2 * time.Hour), NewKeyShare: 0.5}, {At: from.Add(4 * time.Hour), NewKeyShare: 1}}},
		{ClientID: "", NewKeyShare: 0, Points: []readapi.BurnDownPoint{{At: from.Add(time.Hour), NewKeyShare: 0}}},
		{ClientID: "quiet"},
	}}
	c := burnDownChart(b)
	if len(c.Series) != 2 || c.Empty {
		t.Fatalf("series %+v, want two (a client without points is not drawn)", c.Series)
	}
	// x: 44 + f*(628-44); y: 192 - share*(192-10).
	if got, want := c.Series[0].Points, "44.0,192.0 336.0,101.0 628.0,10.0"; got != want {
		t.Errorf("acme-web's points %q, want %q", got, want)
	}
	if s := c.Series[1]; s.Client != "(no client)" || s.Points != "190.0,192.0" || s.LastX != "190.0" || s.Class != "s1" {
		t.Errorf("the callers without a client: %+v", s)
	}
	if len(c.Grid) != 5 || c.Grid[4].Label != "100%" || c.Grid[4].Y != "10.0" || len(c.Ticks) != 5 {
		t.Errorf("grid %+v ticks %+v", c.Grid, c.Ticks)
	}
	if !burnDownChart(readapi.BurnDown{From: from, To: from}).Empty {
		t.Error("a burn-down without requests is not Empty")
	}
	many := readapi.BurnDown{From: from, To: from.Add(time.Hour)}
	for i := range 11 {
		many.Clients = append(many.Clients, readapi.ClientBurnDown{ClientID: strings.Repeat("c", i+1), Points: []readapi.BurnDownPoint{{At: from}}})
	}
	if c := burnDownChart(many); len(c.Series) != maxSeries || c.Omitted != 3 {
		t.Errorf("%d series and %d omitted of 11 clients, want %d and 3", len(c.Series), c.Omitted, maxSeries)
	}
}
