package detect

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
)

// Leak is a placeholder until the detector is written.
type Leak struct {
	conn driver.Conn
	cfg  config.Leak
}

// NewLeak returns the detector.
func NewLeak(conn driver.Conn, cfg config.Leak) *Leak { return &Leak{conn: conn, cfg: cfg} }

// Name is the detector's name in findings, metrics and config.
func (d *Leak) Name() string { return "leak" }

// Detect is not written yet.
func (d *Leak) Detect(ctx context.Context, now time.Time) ([]Finding, error) { return nil, nil }
