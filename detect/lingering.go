package detect

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
)

// Lingering is a placeholder until the detector is written.
type Lingering struct {
	conn driver.Conn
	cfg  config.Lingering
}

// NewLingering returns the detector.
func NewLingering(conn driver.Conn, cfg config.Lingering) *Lingering { return &Lingering{conn: conn, cfg: cfg} }

// Name is the detector's name in findings, metrics and config.
func (d *Lingering) Name() string { return "lingering" }

// Detect is not written yet.
func (d *Lingering) Detect(ctx context.Context, now time.Time) ([]Finding, error) { return nil, nil }
