//go:build nolauncher

package testbed

import (
	"context"
	"io"
)

// embeddedClickHouse is false in a build with -tags nolauncher: without purego's libc imports the
// binary links statically (CGO_ENABLED=0), for the distroless/static image. `keywatch demo` and
// `keywatch clickhouse-server` then say how to get a build that has it.
const embeddedClickHouse = false

func serveClickHouse(context.Context, serveOptions, io.Writer) error {
	return errNoEmbeddedClickHouse()
}
