package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/constant"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// pendingTimeBinds are the times still bound at whole seconds in packages other people were
// changing when the rule came in: file -> enclosing function -> how many arguments. Convert them
// (bind t.UnixMilli() and read it with fromUnixTimestamp64Milli(toInt64(?), 'UTC')) and remove them
// here; nothing may be added.
var pendingTimeBinds = map[string]map[string]int{}

// secondsOnPurpose are calls that bind whole Unix seconds as numbers to compute with, not as a
// time: file -> enclosing function.
var secondsOnPurpose = map[string]map[string]bool{
	// The benchmark's generator works in whole seconds (now_s, migrated_at, finished_at).
	"cmd/bench-detect/load.go": {"(loader).load": true},
}

// TestTimesAreBoundAsMilliseconds holds every package of the module, tests included, to the way
// keywatch binds times (see the package comment): no Exec, Query, QueryRow, Select or AsyncInsert
// call, nor any function of ours that hands its arguments to one, nor clickhouse.Named, is given a
// time.Time (or *time.Time, or a slice of them), since clickhouse-go would write it as
// toDateTime('<unix seconds>'); and a t.UnixMilli() argument fills a ? that
// fromUnixTimestamp64Milli reads. It type-checks the module's source, so it fails on a call
// written tomorrow, not only on those it was written against.
func TestTimesAreBoundAsMilliseconds(t *testing.T) {
	if testing.Short() {
		t.Skip("type-checks the whole module")
	}
	m := theModule(t)
	found := m.timeBinds(m.checked)
	if len(m.checked) < 10 {
		t.Fatalf("only %d packages checked; the module was not read", len(m.checked))
	}
	left := map[string]map[string]int{}
	for file, fns := range pendingTimeBinds {
		left[file] = map[string]int{}
		for fn, n := range fns {
			left[file][fn] = n
		}
	}
	for _, f := range found {
		if f.secondsBind && secondsOnPurpose[f.file][f.function] {
			continue
		}
		if f.secondsBind && left[f.file][f.function] > 0 {
			left[f.file][f.function]--
			continue
		}
		t.Errorf("%s", f)
	}
	for file, fns := range left {
		for fn, n := range fns {
			if n > 0 {
				t.Errorf("%s: %s binds %d time.Time fewer than pendingTimeBinds says: remove them there", file, fn, n)
			}
		}
	}
}

// TestTimeBindGuardCatches: the guard above finds each way of binding a time wrongly that it knows,
// and none of the right ones.
func TestTimeBindGuardCatches(t *testing.T) {
	if testing.Short() {
		t.Skip("type-checks the whole module")
	}
	m := theModule(t)
	dir := t.TempDir()
	src := `package probe

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

type store struct{ conn driver.Conn }

func (s store) count(ctx context.Context, q string, args ...any) error {
	return s.conn.QueryRow(ctx, q, args...).Scan()
}

func calls(ctx context.Context, conn driver.Conn, t time.Time, ts []time.Time) {
	_ = conn.Exec(ctx, "INSERT INTO x VALUES (?)", t)
	_ = conn.Exec(ctx, "INSERT INTO x VALUES (?)", &t)
	_, _ = conn.Query(ctx, "SELECT 1 WHERE ts IN ?", ts)
	_ = store{conn}.count(ctx, "SELECT count() WHERE ts > ?", t)
	args := []any{"a"}
	args = append(args, t)
	_, _ = conn.Query(ctx, "SELECT ? WHERE ts > ?", args...)
	_ = conn.Exec(ctx, "INSERT INTO x VALUES (@t)", clickhouse.Named("t", t))
	_ = conn.Select(ctx, nil, "SELECT 1 WHERE ts > toDateTime(?)", t.Unix())
	_ = conn.Exec(ctx, "INSERT INTO x VALUES (?)", t.UnixMilli())
	_ = conn.Exec(ctx, "INSERT INTO x VALUES (?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'))", t.UnixMilli(), 1)

	_ = conn.Exec(ctx, "INSERT INTO x VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'))", t.UnixMilli())
	_, _ = conn.Query(ctx, "SELECT '?', ` + "`?`" + ` /* ? */ WHERE ts > fromUnixTimestamp64Milli(toInt64(?) - 5, 'UTC') -- ?\n", t.UnixMilli())
	_ = conn.Exec(ctx, "INSERT INTO x VALUES (?)", t.String())
}
`
	if err := os.WriteFile(filepath.Join(dir, "probe.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, cp, err := m.check("example.com/probe", dir, []string{"probe.go"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range m.timeBinds([]*checkedPackage{cp}) {
		got = append(got, fmt.Sprintf("%d %s", b.pos.Line, b.why))
	}
	want := []string{
		"18 t is bound at whole seconds",
		"19 &t is bound at whole seconds",
		"20 ts is bound at whole seconds",
		"21 t is bound at whole seconds",
		"24 t (appended to args) is bound at whole seconds",
		"25 t is bound at whole seconds",
		"26 t.Unix() binds whole seconds: bind .UnixMilli() instead",
		"27 t.UnixMilli() fills a ? that fromUnixTimestamp64Milli(toInt64(?), 'UTC') does not read",
		"28 t.UnixMilli() fills a ? that fromUnixTimestamp64Milli(toInt64(?), 'UTC') does not read",
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("the guard found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

var loaded struct {
	sync.Once
	m   *module
	err error
}

// theModule is the module, loaded once for the tests that need it.
func theModule(t *testing.T) *module {
	t.Helper()
	loaded.Do(func() { loaded.m, loaded.err = loadModule() })
	if loaded.err != nil {
		t.Fatal(loaded.err)
	}
	return loaded.m
}

// timeBind is a call that binds a time the wrong way.
type timeBind struct {
	pos         token.Position
	file        string // relative to the module
	function    string // enclosing function, e.g. (*store).write
	call        string
	why         string
	secondsBind bool // a time.Time given as an argument (the others: misread milliseconds)
}

func (b timeBind) String() string {
	return fmt.Sprintf("%s:%d: %s: %s in %s", b.file, b.pos.Line, b.function, b.why, b.call)
}

// module is the module's packages, type-checked from source (tests included), over the export
// data of everything else.
type module struct {
	root    string
	fset    *token.FileSet
	listed  map[string]*listedPackage // by import path: the module's packages
	exports map[string]string         // by import path: export data of the others
	gc      types.Importer
	pkgs    map[string]basePackage // the module's packages, without tests
	checked []*checkedPackage
	src     map[string][]byte // file contents, for messages
}

type listedPackage struct {
	ImportPath, Dir, Name, Export, ForTest       string
	GoFiles, CgoFiles, TestGoFiles, XTestGoFiles []string
	Standard                                     bool
	Module                                       *struct{ Path string }
}

type checkedPackage struct {
	files []*ast.File
	info  *types.Info
}

func loadModule() (*module, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m: %w", err)
	}
	m := &module{
		root: strings.TrimSpace(string(out)), fset: token.NewFileSet(),
		listed: map[string]*listedPackage{}, exports: map[string]string{}, pkgs: map[string]basePackage{}, src: map[string][]byte{},
	}
	// -e: a package of ours that does not build is still listed, and checked as far as it goes.
	cmd := exec.Command("go", "list", "-e", "-test", "-deps", "-export",
		"-json=ImportPath,Dir,Name,Export,ForTest,GoFiles,CgoFiles,TestGoFiles,XTestGoFiles,Standard,Module", "./...")
	cmd.Dir = m.root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w: %s", err, stderr.String())
	}
	modPath := ""
	if raw, err := exec.Command("go", "list", "-m").Output(); err == nil {
		modPath = strings.TrimSpace(string(raw))
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		switch {
		case p.ForTest != "" || strings.HasSuffix(p.ImportPath, ".test"):
		case p.Module != nil && p.Module.Path == modPath:
			m.listed[p.ImportPath] = &p
		case p.Export != "":
			m.exports[p.ImportPath] = p.Export
		}
	}
	m.gc = importer.ForCompiler(m.fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := m.exports[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(file)
	})
	paths := make([]string, 0, len(m.listed))
	for p := range m.listed {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		l := m.listed[p]
		self, cp, err := m.base(p)
		if err != nil {
			return nil, err
		}
		if len(l.TestGoFiles) > 0 {
			self, cp, err = m.check(p, l.Dir, append(sources(l), l.TestGoFiles...), nil)
			if err != nil {
				return nil, err
			}
		}
		m.checked = append(m.checked, cp)
		if len(l.XTestGoFiles) > 0 {
			_, cp, err := m.check(p+"_test", l.Dir, l.XTestGoFiles, map[string]*types.Package{p: self})
			if err != nil {
				return nil, err
			}
			m.checked = append(m.checked, cp)
		}
	}
	return m, nil
}

func sources(l *listedPackage) []string {
	return append(append([]string{}, l.GoFiles...), l.CgoFiles...)
}

// base returns the module's package p without its tests, checked once.
func (m *module) base(p string) (*types.Package, *checkedPackage, error) {
	if b, ok := m.pkgs[p]; ok {
		return b.pkg, b.cp, nil
	}
	pkg, cp, err := m.check(p, m.listed[p].Dir, sources(m.listed[p]), nil)
	if err != nil {
		return nil, nil, err
	}
	m.pkgs[p] = basePackage{pkg, cp}
	return pkg, cp, nil
}

type basePackage struct {
	pkg *types.Package
	cp  *checkedPackage
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

// check type-checks files of dir as package path; type errors (a package being edited) are
// tolerated: what could be typed is. Imports in also are taken as given.
func (m *module) check(path, dir string, names []string, also map[string]*types.Package) (*types.Package, *checkedPackage, error) {
	var files []*ast.File
	for _, n := range names {
		f, err := parser.ParseFile(m.fset, filepath.Join(dir, n), nil, parser.SkipObjectResolution)
		if err != nil && f == nil {
			return nil, nil, err
		}
		files = append(files, f)
	}
	info := &types.Info{
		Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{},
		Defs: map[*ast.Ident]types.Object{}, Selections: map[*ast.SelectorExpr]*types.Selection{},
	}
	imp := importerFunc(func(p string) (*types.Package, error) {
		if pkg, ok := also[p]; ok {
			return pkg, nil
		}
		if _, ok := m.listed[p]; ok {
			pkg, _, err := m.base(p) // the module's imports form no cycle
			return pkg, err
		}
		return m.gc.Import(p)
	})
	conf := types.Config{Importer: imp, Error: func(error) {}, FakeImportC: true}
	pkg, _ := conf.Check(path, m.fset, files, info)
	return pkg, &checkedPackage{files: files, info: info}, nil
}

// queryMethods are clickhouse-go's calls (driver.Conn, and database/sql's alike) whose arguments
// are bound into the query text on the client.
var queryMethods = []string{"Exec", "Query", "QueryRow", "Select", "AsyncInsert", "ExecContext", "QueryContext", "QueryRowContext"}

// timeBinds finds the calls of pkgs that bind a time the wrong way.
func (m *module) timeBinds(pkgs []*checkedPackage) []timeBind {
	// Functions of ours that pass their variadic ...any on to a query call bind like one.
	wrappers := map[string]bool{}
	for changed := true; changed; {
		changed = false
		for _, cp := range pkgs {
			for _, f := range cp.files {
				for _, d := range f.Decls {
					fd, ok := d.(*ast.FuncDecl)
					if !ok || fd.Body == nil {
						continue
					}
					fn, _ := cp.info.Defs[fd.Name].(*types.Func)
					if fn == nil || wrappers[fn.FullName()] {
						continue
					}
					param := variadicAny(fn.Signature())
					if param == nil {
						continue
					}
					ast.Inspect(fd.Body, func(n ast.Node) bool {
						call, ok := n.(*ast.CallExpr)
						if !ok || !call.Ellipsis.IsValid() || wrappers[fn.FullName()] {
							return true
						}
						if _, _, ok := m.binder(cp.info, call, wrappers); !ok {
							return true
						}
						if id, ok := ast.Unparen(call.Args[len(call.Args)-1]).(*ast.Ident); ok && cp.info.Uses[id] == param {
							wrappers[fn.FullName()] = true
							changed = true
						}
						return true
					})
				}
			}
		}
	}

	seen := map[string]bool{} // a file checked with and without its tests is reported once
	var out []timeBind
	for _, cp := range pkgs {
		for _, f := range cp.files {
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				ast.Inspect(fd.Body, func(n ast.Node) bool {
					call, ok := n.(*ast.CallExpr)
					if !ok {
						return true
					}
					for _, b := range m.checkCall(cp.info, fd, call, wrappers) {
						key := b.String()
						if !seen[key] {
							seen[key] = true
							out = append(out, b)
						}
					}
					return true
				})
			}
		}
	}
	slices.SortFunc(out, func(a, b timeBind) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// binder reports whether call binds arguments into a query: which of its arguments are bound
// (from the first on) and which argument is the query (-1: none known).
func (m *module) binder(info *types.Info, call *ast.CallExpr, wrappers map[string]bool) (first, query int, ok bool) {
	var fn *types.Func
	switch f := ast.Unparen(call.Fun).(type) {
	case *ast.SelectorExpr:
		fn, _ = info.Uses[f.Sel].(*types.Func)
	case *ast.Ident:
		fn, _ = info.Uses[f].(*types.Func)
	}
	if fn == nil {
		return 0, 0, false
	}
	sig := fn.Signature()
	if fn.Pkg() != nil && strings.HasPrefix(fn.Pkg().Path(), "github.com/ClickHouse/clickhouse-go/") && fn.Name() == "Named" {
		return 1, -1, true
	}
	if variadicAny(sig) == nil {
		return 0, 0, false
	}
	n := sig.Params().Len()
	if !wrappers[fn.FullName()] && (sig.Recv() == nil || !slices.Contains(queryMethods, fn.Name())) {
		return 0, 0, false
	}
	query = -1
	if n >= 2 {
		if b, ok := sig.Params().At(n - 2).Type().Underlying().(*types.Basic); ok && b.Kind() == types.String {
			query = n - 2
		}
	}
	return n - 1, query, true
}

// variadicAny returns the ...any parameter of sig, if it has one.
func variadicAny(sig *types.Signature) *types.Var {
	if !sig.Variadic() {
		return nil
	}
	p := sig.Params().At(sig.Params().Len() - 1)
	if s, ok := p.Type().(*types.Slice); ok {
		if i, ok := s.Elem().Underlying().(*types.Interface); ok && i.Empty() {
			return p
		}
	}
	return nil
}

func (m *module) checkCall(info *types.Info, fd *ast.FuncDecl, call *ast.CallExpr, wrappers map[string]bool) []timeBind {
	first, queryArg, ok := m.binder(info, call, wrappers)
	if !ok || len(call.Args) <= first {
		return nil
	}
	pos := m.fset.Position(call.Pos())
	rel, _ := filepath.Rel(m.root, pos.Filename)
	mk := func(why string, seconds bool) timeBind {
		return timeBind{pos: pos, file: filepath.ToSlash(rel), function: funcName(fd), call: shorten(m.text(call)), why: why, secondsBind: seconds}
	}
	var out []timeBind
	var bound []ast.Expr
	if call.Ellipsis.IsValid() {
		spread := call.Args[len(call.Args)-1]
		if isTime(info.TypeOf(spread)) {
			out = append(out, mk("a slice of times is bound at whole seconds", true))
		}
		for _, e := range assignedElements(info, fd, spread) {
			if isTime(info.TypeOf(e)) {
				out = append(out, mk(fmt.Sprintf("%s (appended to %s) is bound at whole seconds", m.text(e), m.text(spread)), true))
			}
		}
	} else {
		bound = call.Args[first:]
		for _, e := range bound {
			switch {
			case isTime(info.TypeOf(e)):
				out = append(out, mk(fmt.Sprintf("%s is bound at whole seconds", m.text(e)), true))
			case isTimeMethod(info, e, "Unix"):
				out = append(out, mk(fmt.Sprintf("%s binds whole seconds: bind .UnixMilli() instead", m.text(e)), true))
			}
		}
	}
	// t.UnixMilli() must fill a ? read by fromUnixTimestamp64Milli.
	if queryArg < 0 || queryArg >= len(call.Args) {
		return out
	}
	tv := info.Types[call.Args[queryArg]]
	if tv.Value == nil || len(bound) == 0 {
		return out
	}
	if tv.Value.Kind() != constant.String {
		return out
	}
	readers := placeholderReaders(constant.StringVal(tv.Value))
	for i, e := range bound {
		if !isTimeMethod(info, e, "UnixMilli") {
			continue
		}
		if i >= len(readers) {
			out = append(out, mk(fmt.Sprintf("%s fills no ? of the query", m.text(e)), false))
		} else if !slices.Contains(readers[i], "fromunixtimestamp64milli") {
			out = append(out, mk(fmt.Sprintf("%s fills a ? that fromUnixTimestamp64Milli(toInt64(?), 'UTC') does not read", m.text(e)), false))
		}
	}
	return out
}

// isTime reports whether a value of type t binds as toDateTime: time.Time, *time.Time, or a slice
// or array of them.
func isTime(t types.Type) bool {
	switch t := t.(type) {
	case *types.Named:
		if o := t.Obj(); o.Pkg() != nil && o.Pkg().Path() == "time" && o.Name() == "Time" {
			return true
		}
	case *types.Pointer:
		return isTime(t.Elem())
	case *types.Slice:
		return isTime(t.Elem())
	case *types.Array:
		return isTime(t.Elem())
	}
	return false
}

// isTimeMethod reports whether e is t.name() of a time.Time t.
func isTimeMethod(info *types.Info, e ast.Expr, name string) bool {
	call, ok := ast.Unparen(e).(*ast.CallExpr)
	if !ok || len(call.Args) > 0 {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == name && isTime(info.TypeOf(sel.X))
}

// assignedElements returns what the function puts into the slice spread: the elements of
// composite literals it is given and of appends to it.
func assignedElements(info *types.Info, fd *ast.FuncDecl, spread ast.Expr) []ast.Expr {
	id, ok := ast.Unparen(spread).(*ast.Ident)
	if !ok {
		return nil
	}
	obj := info.ObjectOf(id)
	if obj == nil {
		return nil
	}
	var out []ast.Expr
	collect := func(rhs ast.Expr) {
		switch r := ast.Unparen(rhs).(type) {
		case *ast.CompositeLit:
			out = append(out, r.Elts...)
		case *ast.CallExpr:
			if f, ok := r.Fun.(*ast.Ident); ok && f.Name == "append" && len(r.Args) > 1 && !r.Ellipsis.IsValid() {
				out = append(out, r.Args[1:]...)
			}
		}
	}
	ast.Inspect(fd, func(n ast.Node) bool {
		switch s := n.(type) {
		case *ast.AssignStmt:
			for i, l := range s.Lhs {
				if lid, ok := l.(*ast.Ident); ok && info.ObjectOf(lid) == obj && i < len(s.Rhs) {
					collect(s.Rhs[i])
				}
			}
		case *ast.ValueSpec:
			for i, name := range s.Names {
				if info.ObjectOf(name) == obj && i < len(s.Values) {
					collect(s.Values[i])
				}
			}
		}
		return true
	})
	return out
}

// placeholderReaders returns, for each ? of sql in order, the functions whose parentheses it is
// in (lower case, innermost first). Quoted strings, quoted identifiers and comments are skipped.
func placeholderReaders(sql string) [][]string {
	var out [][]string
	var stack []string
	word := func(i int) string { // the identifier that ends just before i
		j := i
		for j > 0 && (isIdent(sql[j-1])) {
			j--
		}
		return strings.ToLower(sql[j:i])
	}
	for i := 0; i < len(sql); i++ {
		switch c := sql[i]; {
		case c == '\'' || c == '"' || c == '`':
			for i++; i < len(sql) && sql[i] != c; i++ {
				if sql[i] == '\\' {
					i++
				}
			}
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			if end := strings.Index(sql[i+2:], "*/"); end >= 0 {
				i += end + 3
			} else {
				i = len(sql)
			}
		case c == '(':
			stack = append(stack, word(i))
		case c == ')':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case c == '?':
			in := slices.Clone(stack)
			slices.Reverse(in)
			out = append(out, in)
		}
	}
	return out
}

func isIdent(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	recv, star := fd.Recv.List[0].Type, ""
	if s, ok := recv.(*ast.StarExpr); ok {
		recv, star = s.X, "*"
	}
	if ix, ok := recv.(*ast.IndexExpr); ok {
		recv = ix.X
	}
	name := "?"
	if id, ok := recv.(*ast.Ident); ok {
		name = id.Name
	}
	return "(" + star + name + ")." + fd.Name.Name
}

func (m *module) text(n ast.Node) string {
	start, end := m.fset.Position(n.Pos()), m.fset.Position(n.End())
	src, ok := m.src[start.Filename]
	if !ok {
		src, _ = os.ReadFile(start.Filename)
		m.src[start.Filename] = src
	}
	if end.Offset > len(src) {
		return "?"
	}
	return string(src[start.Offset:end.Offset])
}

func shorten(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}
