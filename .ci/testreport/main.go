// Command testreport reads `go test -json` on standard input and fails CI when the run is
// not a full, clean one: a test failed or was skipped, a package did not build, or a test
// that the module's packages define did not run (a README edit that narrows the test
// command, by package pattern, -run, -skip or -short, is caught here). It prints the
// output of every failing or skipped test, and last a plain summary line:
//
//	tests: N passed, N failed, N skipped
//
// Usage: go test -json ./... | go run ./.ci/testreport
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time        time.Time
	Action      string
	Package     string
	ImportPath  string // build-output events name the build here
	FailedBuild string // on a package's fail: the build that failed
	Test        string
	Output      string
}

// key names a test, or a package when test is "".
type key struct{ pkg, test string }

func main() {
	expected, err := definedTests()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	r := newReport()
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	problems := r.check(expected)
	r.print(os.Stdout, problems)
	if len(problems) > 0 {
		os.Exit(1)
	}
}

// report is what the run said, per test and per package.
type report struct {
	result   map[key]string      // the last of pass, fail, skip
	output   map[key][]string    // output lines, to show for failures and skips
	build    map[string][]string // build output by build id ("pkg [pkg.test]")
	failedTo map[string]string   // the build id of a package that did not build
	order    []key               // tests and packages in the order they finished
	shuffles map[string]string
	stray    []string // lines that are not test2json events
}

func newReport() *report {
	return &report{result: map[key]string{}, output: map[key][]string{}, build: map[string][]string{},
		failedTo: map[string]string{}, shuffles: map[string]string{}}
}

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			r.stray = append(r.stray, string(line))
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output":
			r.output[k] = append(r.output[k], e.Output)
			if s, ok := strings.CutPrefix(e.Output, "-test.shuffle "); ok && e.Test == "" {
				r.shuffles[e.Package] = strings.TrimSpace(s)
			}
		case "build-output":
			r.build[e.ImportPath] = append(r.build[e.ImportPath], e.Output)
		case "pass", "fail", "skip":
			if e.FailedBuild != "" {
				r.failedTo[e.Package] = e.FailedBuild
			}
			if _, seen := r.result[k]; !seen {
				r.order = append(r.order, k)
			}
			r.result[k] = e.Action
		}
	}
	return sc.Err()
}

// check returns what makes the run unacceptable, one line each.
func (r *report) check(expected map[string][]string) []string {
	var problems []string
	for _, l := range r.stray {
		problems = append(problems, "not a go test -json line: "+l)
	}
	for _, k := range r.order {
		switch res := r.result[k]; {
		case k.test == "" && res == "fail":
			problems = append(problems, "package "+k.pkg+" failed")
		case k.test != "" && res == "fail":
			problems = append(problems, "test "+k.pkg+" "+k.test+" failed")
		case k.test != "" && res == "skip":
			problems = append(problems, "test "+k.pkg+" "+k.test+" was skipped")
		}
	}
	for _, pkg := range sortedKeys(expected) {
		if _, ran := r.result[key{pkg, ""}]; !ran {
			problems = append(problems, "package "+pkg+" has tests but did not run")
			continue
		}
		for _, test := range expected[pkg] {
			if _, ran := r.result[key{pkg, test}]; !ran {
				problems = append(problems, "test "+pkg+" "+test+" did not run")
			}
		}
	}
	return problems
}

func (r *report) print(w io.Writer, problems []string) {
	var passed, failed, skipped int
	for _, k := range r.order {
		if k.test == "" {
			continue
		}
		switch r.result[k] {
		case "pass":
			passed++
		case "fail":
			failed++
		case "skip":
			skipped++
		}
	}
	for _, k := range r.order {
		res := r.result[k]
		if res == "pass" || (k.test == "" && res == "skip") {
			continue
		}
		name := k.pkg
		if k.test != "" {
			name += " " + k.test
		}
		fmt.Fprintf(w, "\n=== %s: %s\n", strings.ToUpper(res), name)
		if id := r.failedTo[k.pkg]; id != "" && k.test == "" {
			for _, l := range r.build[id] {
				fmt.Fprint(w, l)
			}
		}
		for _, l := range r.output[k] {
			fmt.Fprint(w, l)
		}
		if s := r.shuffles[k.pkg]; s != "" && res == "fail" {
			fmt.Fprintf(w, "(reproduce the order with -shuffle=%s)\n", s)
		}
	}
	if len(problems) > 0 {
		fmt.Fprintln(w, "\nCI fails:")
		for _, p := range problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
	fmt.Fprintf(w, "\ntests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
}

// definedTests lists, per package of the module (go list ./...), the top-level tests and
// fuzz targets (whose seed corpus go test runs) its test files define.
func definedTests() (map[string][]string, error) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Dir,TestGoFiles,XTestGoFiles", "./...").Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	tests := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath, Dir           string
			TestGoFiles, XTestGoFiles []string
		}
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("go list: %w", err)
		}
		files := append(p.TestGoFiles, p.XTestGoFiles...)
		if len(files) == 0 {
			continue
		}
		tests[p.ImportPath] = []string{}
		for _, f := range files {
			names, err := testFuncs(filepath.Join(p.Dir, f))
			if err != nil {
				return nil, err
			}
			tests[p.ImportPath] = append(tests[p.ImportPath], names...)
		}
		slices.Sort(tests[p.ImportPath])
	}
	return tests, nil
}

// testFuncs returns the names of the functions in a test file that go test runs as tests:
// TestXxx(*testing.T) and FuzzXxx(*testing.F), as the testing package names them.
func testFuncs(path string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || fn.Type.TypeParams != nil || len(fn.Type.Params.List) != 1 {
			continue
		}
		for prefix, param := range map[string]string{"Test": "T", "Fuzz": "F"} {
			if isTestName(fn.Name.Name, prefix) && isTestingParam(fn.Type.Params.List[0].Type, param) {
				names = append(names, fn.Name.Name)
			}
		}
	}
	return names, nil
}

// isTestName is the testing package's rule: the prefix, then nothing or a non-lowercase
// letter (TestMain is not a test).
func isTestName(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || name == "TestMain" {
		return false
	}
	return rest == "" || !(rest[0] >= 'a' && rest[0] <= 'z')
}

// isTestingParam reports whether t is *testing.<name>.
func isTestingParam(t ast.Expr, name string) bool {
	star, ok := t.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "testing" && sel.Sel.Name == name
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
