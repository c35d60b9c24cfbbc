package web

import (
	"io"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// staticImport matches the relative module specifiers of static imports and re-exports
// (`import ... from './x.js'`, `export { y } from './x.js'`), which is how the browser
// modules reach one another.
var staticImport = regexp.MustCompile(`(?m)^(?:import|export)\s[^'"]*?from\s+'(\.{1,2}/[^']+)'`)

// TestStaticModuleImportsAreEmbedded follows every relative import from the modules the page
// and apps load (app.js, chatd.js) and requires each target in the embedded file system. The
// node tests read the modules from disk, so a module that the embed leaves out (a name
// starting with '.' or '_') would pass them and still break every browser.
func TestStaticModuleImportsAreEmbedded(t *testing.T) {
	files := FS()
	seen := map[string]bool{}
	queue := []string{"/app.js", "/chatd.js"}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		src := readStatic(t, files, name)
		for _, m := range staticImport.FindAllStringSubmatch(src, -1) {
			queue = append(queue, path.Join(path.Dir(name), m[1]))
		}
	}
	require.Contains(t, seen, "/chatd/client.js", "chatd.js's modules were followed")
	t.Logf("%d modules reachable and embedded", len(seen))
}

// readStatic reads one embedded file, failing the test if it is missing.
func readStatic(t *testing.T, files http.FileSystem, name string) string {
	t.Helper()
	f, err := files.Open(name)
	require.NoError(t, err, "%s is imported but not embedded", name)
	defer f.Close()
	b, err := io.ReadAll(f)
	require.NoError(t, err, name)
	return string(b)
}

// TestStaticModulesAreAllReachable keeps the chatd/ and app/ directories free of modules nothing
// imports: a file left behind by a refactoring would be served (and type-checked) but never run.
func TestStaticModulesAreAllReachable(t *testing.T) {
	var imported []string
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".js") {
			return err
		}
		b, err := fs.ReadFile(static, p)
		for _, m := range staticImport.FindAllStringSubmatch(string(b), -1) {
			imported = append(imported, path.Join(path.Dir(p), m[1]))
		}
		return err
	})
	require.NoError(t, err)
	for _, dir := range []string{"static/chatd", "static/app"} {
		modules, err := fs.Glob(static, dir+"/*.js")
		require.NoError(t, err)
		require.NotEmpty(t, modules, dir)
		for _, m := range modules {
			require.Contains(t, imported, m, "nothing imports %s", m)
		}
	}
}
