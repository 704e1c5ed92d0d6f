package testbed

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// ChromiumEnv is where `make test` passes the headless Chromium that browser tests drive.
const ChromiumEnv = "CHROMIUM_BIN"

// chromiumFolder is the browser's folder in the cache: Debian 12's chromium-headless-shell and the
// libraries it needs beyond a base system, unpacked by fetch-chromium.sh.
const chromiumFolder = "chromium/debian12"

// Chromium returns the headless Chromium browser tests drive: $CHROMIUM_BIN, else the one
// `make chromium` unpacks into $(KEYWATCH_CACHE)/chromium/debian12, fetching it first (about 90 MB
// from Debian's archive) when it is missing. It fails t when there is none: a browser test is
// never skipped.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(ChromiumEnv); p != "" {
		return p
	}
	cache, err := keywatchCache()
	if err != nil {
		t.Fatalf("chromium: locate the cache: %v", err)
	}
	dir := filepath.Join(cache, chromiumFolder)
	bin := filepath.Join(dir, "chromium")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	t.Logf("%s is not set and %s is missing: fetching it (once; `make chromium` does the same)", ChromiumEnv, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(root, "internal/testbed/fetch-chromium.sh"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: internal/testbed/fetch-chromium.sh %s: %v\n%s", dir, err, out)
	}
	return bin
}

// ChromiumFlags are the command-line flags browser tests start Chromium with: headless, without
// the sandbox (tests may run as root), and without the background connections to Google's
// services a closed network refuses.
var ChromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
}
