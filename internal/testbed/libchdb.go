package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ChdbVersion is the pinned version of the npm package @chdb/lib-linux-x64-gnu that carries
// libchdb.so. The Makefile's `chdb` target fetches exactly this version and checks its integrity.
const ChdbVersion = "26.7.3-stable.1"

// LibchdbPath returns where libchdb.so is expected: $KEYWATCH_LIBCHDB when set, otherwise the
// cache folder the Makefile fills, $(KEYWATCH_CACHE)/chdb/<version>/libchdb.so.
func LibchdbPath() (string, error) {
	if p := os.Getenv("KEYWATCH_LIBCHDB"); p != "" {
		return p, nil
	}
	cache, err := keywatchCache()
	if err != nil {
		return "", fmt.Errorf("testbed: locate cache folder for libchdb.so: %w", err)
	}
	return filepath.Join(cache, "chdb", ChdbVersion, "libchdb.so"), nil
}

// findLibchdb returns the path of an existing libchdb.so or an error that says how to get one.
func findLibchdb() (string, error) {
	p, err := LibchdbPath()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("testbed: %s is missing: run `make chdb` (it fetches @chdb/lib-linux-x64-gnu@%s from npm) or set KEYWATCH_LIBCHDB", p, ChdbVersion)
		}
		return "", fmt.Errorf("testbed: look for libchdb.so: %w", err)
	}
	return p, nil
}
