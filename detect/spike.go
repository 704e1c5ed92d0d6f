package detect

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
)

// Spike is a placeholder until the detector is written.
type Spike struct {
	conn driver.Conn
	cfg  config.Spike
}

// NewSpike returns the detector.
func NewSpike(conn driver.Conn, cfg config.Spike) *Spike { return &Spike{conn: conn, cfg: cfg} }

// Name is the detector's name in findings, metrics and config.
func (d *Spike) Name() string { return "spike" }

// Detect is not written yet.
func (d *Spike) Detect(ctx context.Context, now time.Time) ([]Finding, error) { return nil, nil }
