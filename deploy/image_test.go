package deploy

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var dockerGoBuild = regexp.MustCompile(`(?m)^RUN go build .*-tags (\S+) .*\./cmd/keywatch$`)

// TestImageBinaryIsStatic builds keywatch as the Dockerfile does (CGO_ENABLED=0 and its build tags)
// and checks that the binary needs nothing from the distroless/static image: no ELF interpreter, no
// shared library. The embedded-ClickHouse commands in it must say why they cannot run.
func TestImageBinaryIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keywatch")
	}
	m := dockerGoBuild.FindStringSubmatch(string(read(t, "Dockerfile")))
	if m == nil {
		t.Fatal("Dockerfile has no `RUN go build ... -tags ... ./cmd/keywatch` line")
	}
	bin := filepath.Join(t.TempDir(), "keywatch")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-tags", m[1], "-o", bin, "./cmd/keywatch")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", m[1], err, out)
	}
	list := exec.CommandContext(ctx, "go", "list", "-deps", "-tags", m[1], "./cmd/keywatch")
	list.Dir = ".."
	deps, err := list.Output()
	if err != nil {
		t.Fatalf("go list -deps -tags %s: %v", m[1], err)
	}
	for _, dep := range strings.Fields(string(deps)) {
		if dep == "testing" || strings.Contains(dep, "/kfake") || strings.HasSuffix(dep, "/internal/testbed") {
			t.Errorf("the image's binary links %s: a test rig has no place in production", dep)
		}
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %s program header: it is dynamically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v", libs)
	}

	out, err := exec.CommandContext(ctx, bin, "clickhouse-server", "--data", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "built without the embedded ClickHouse") || !strings.Contains(string(out), "make demo") {
		t.Errorf("keywatch clickhouse-server in the image build: %v\n%s\nwant it to fail saying it was built without the embedded ClickHouse", err, out)
	}
}
