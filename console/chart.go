package console

import (
	"fmt"
	"strings"
	"time"

	"github.com/keywatch/keywatch/readapi"
)

// The burn-down's drawing area, in SVG units: the plot sits inside the margins.
const (
	chartW, chartH                     = 640, 220
	marginL, marginR, marginT, marginB = 44, 12, 10, 28
	// maxSeries is how many clients the chart draws; the table below it lists them all.
	maxSeries = 8
)

// chart is a burn-down drawn by the server: each client's share of requests on the new key over
// the rotation, one polyline per client. Its values are numbers and the clients' names, which the
// template escapes.
type chart struct {
	W, H   int
	Series []series
	// Grid are the horizontal lines at 0, 25, 50, 75 and 100%.
	Grid  []gridLine
	Ticks []tick
	// PlotLeft..PlotBottom frame the plot.
	PlotLeft, PlotRight, PlotTop, PlotBottom int
	Omitted                                  int
	Empty                                    bool
}

type series struct {
	Client string
	// Class colours the line (s0..s7 in console.css).
	Class  string
	Points string
	// Last is the last point, where the line ends in a dot.
	LastX, LastY string
	Share        float64
}

type gridLine struct {
	Y     string
	Label string
}

type tick struct {
	X     string
	Label string
}

// burnDownChart draws b: x is time from b.From to b.To, y the share on the new key (0 at the
// bottom, 100% at the top). A client's line joins its steps with requests.
func burnDownChart(b readapi.BurnDown) chart {
	c := chart{W: chartW, H: chartH, PlotLeft: marginL, PlotRight: chartW - marginR, PlotTop: marginT, PlotBottom: chartH - marginB}
	span := b.To.Sub(b.From)
	if span <= 0 {
		span = time.Hour
	}
	x := func(t time.Time) float64 {
		f := float64(t.Sub(b.From)) / float64(span)
		return float64(c.PlotLeft) + min(max(f, 0), 1)*float64(c.PlotRight-c.PlotLeft)
	}
	y := func(share float64) float64 {
		return float64(c.PlotBottom) - min(max(share, 0), 1)*float64(c.PlotBottom-c.PlotTop)
	}
	for _, p := range []float64{0, 0.25, 0.5, 0.75, 1} {
		c.Grid = append(c.Grid, gridLine{Y: num(y(p)), Label: fmt.Sprintf("%.0f%%", p*100)})
	}
	for i := range 5 {
		t := b.From.Add(time.Duration(i) * span / 4)
		c.Ticks = append(c.Ticks, tick{X: num(x(t)), Label: t.UTC().Format("Jan 2 15:04")})
	}
	for i, cl := range b.Clients {
		if i == maxSeries {
			c.Omitted = len(b.Clients) - maxSeries
			break
		}
		if len(cl.Points) == 0 {
			continue
		}
		pts := make([]string, 0, len(cl.Points))
		for _, p := range cl.Points {
			pts = append(pts, num(x(p.At))+","+num(y(p.NewKeyShare)))
		}
		last := cl.Points[len(cl.Points)-1]
		name := cl.ClientID
		if name == "" {
			name = "(no client)"
		}
		c.Series = append(c.Series, series{Client: name, Class: fmt.Sprintf("s%d", i), Points: strings.Join(pts, " "),
			LastX: num(x(last.At)), LastY: num(y(last.NewKeyShare)), Share: cl.NewKeyShare})
	}
	c.Empty = len(c.Series) == 0
	return c
}

func num(f float64) string { return fmt.Sprintf("%.1f", f) }
