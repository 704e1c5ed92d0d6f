package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// Tool is a program tests run for real (helm, Alertmanager), built from the Go module proxy at the
// version the Makefile pins. `make test` builds it once (`make <Name>`) into
// $(KEYWATCH_CACHE)/<Name>/<version>/<Name> and passes its path in EnvVar; without it, Binary
// builds the same binary into the same place.
type Tool struct {
	Name       string // the binary and its folder in the cache: "helm"
	Package    string // what go install builds: "helm.sh/helm/v4/cmd/helm"
	VersionVar string // the Makefile's variable pinning the version: "HELM_VERSION"
	EnvVar     string // where `make test` passes the binary's path: "HELM_BIN"
}

// buildTimeout bounds one go install of a tool.
const buildTimeout = 15 * time.Minute

// Binary returns $EnvVar, or the cached binary, building it first when it is missing. A build goes
// through a temporary folder, so that a concurrent run never sees half a binary; t fails when the
// build does.
func (tool Tool) Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(tool.EnvVar); p != "" {
		return p
	}
	path, err := tool.build(t)
	if err != nil {
		t.Fatalf("%s: %v", tool.Name, err)
	}
	return path
}

func (tool Tool) build(t testing.TB) (string, error) {
	version, err := tool.version()
	if err != nil {
		return "", err
	}
	cache, err := keywatchCache()
	if err != nil {
		return "", fmt.Errorf("locate the cache: %w", err)
	}
	path := filepath.Join(cache, tool.Name, version, tool.Name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	t.Logf("%s is not set and %s is missing: building %s %s from the Go module proxy (once, a few minutes on 2 cores; `make %s` does the same)",
		tool.EnvVar, path, tool.Name, version, tool.Name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "install", tool.Package+"@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %v\n%s", tool.Package, version, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, tool.Name), path); err != nil {
		return "", err
	}
	t.Logf("built %s in %s", path, time.Since(start).Round(time.Second))
	return path, nil
}

// version is the Makefile's VersionVar, the one place the version is pinned.
func (tool Tool) version() (string, error) {
	dir, err := moduleRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, "Makefile"))
	if err != nil {
		return "", err
	}
	line := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(tool.VersionVar) + `\s*:=\s*(\S+)\s*$`)
	m := line.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("the Makefile has no %s := line", tool.VersionVar)
	}
	return string(m[1]), nil
}

// moduleRoot is the folder of go.mod: the working directory (a test's package folder) or the
// nearest folder above it with one.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above it")
		}
		dir = parent
	}
}

// keywatchCache is the Makefile's KEYWATCH_CACHE: ${XDG_CACHE_HOME:-$HOME/.cache}/keywatch.
func keywatchCache() (string, error) {
	if d := os.Getenv("KEYWATCH_CACHE"); d != "" {
		return d, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "keywatch"), nil
}
