package detect

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
)

// Hygiene is a placeholder until the detector is written.
type Hygiene struct {
	conn driver.Conn
	cfg  config.Hygiene
}

// NewHygiene returns the detector.
func NewHygiene(conn driver.Conn, cfg config.Hygiene) *Hygiene { return &Hygiene{conn: conn, cfg: cfg} }

// Name is the detector's name in findings, metrics and config.
func (d *Hygiene) Name() string { return "hygiene" }

// Detect is not written yet.
func (d *Hygiene) Detect(ctx context.Context, now time.Time) ([]Finding, error) { return nil, nil }
