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

var dockerGoBuild = regexp.MustCompile(`(?m)^RUN go build (.*) -o \S+ \./cmd/keywatch$`)

// TestImageBinaryIsStatic builds keywatch as the Dockerfile does (CGO_ENABLED=0) and checks that the
// binary needs nothing from the distroless/static image: no ELF interpreter, no shared library.
// `keywatch demo` in it points at the demo's own binary. (What the binary links is checked by the
// architecture test at the repository's root.)
func TestImageBinaryIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keywatch")
	}
	m := dockerGoBuild.FindStringSubmatch(string(read(t, "Dockerfile")))
	if m == nil {
		t.Fatal("Dockerfile has no `RUN go build ... -o ... ./cmd/keywatch` line")
	}
	bin := filepath.Join(t.TempDir(), "keywatch")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if strings.Contains(m[1], "-tags") {
		t.Errorf("the image builds with build tags (%s): the production build is the default one, which the architecture test checks", m[1])
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/keywatch")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
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

	out, err := exec.CommandContext(ctx, bin, "demo").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "make demo") {
		t.Errorf("keywatch demo in the image build: %v\n%s\nwant it to fail pointing at make demo", err, out)
	}
}
