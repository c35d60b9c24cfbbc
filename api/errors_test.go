package api

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every error code the handlers use has its status in the codes table: the code's literal
// is read from the package's source (errorf's first argument, an Error literal's Code), so
// a new code without a status fails here instead of answering 500.
func TestEveryErrorCodeHasAStatus(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := gotoken.NewFileSet()
	used := map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			var lit ast.Expr
			switch n := n.(type) {
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "errorf" && len(n.Args) > 0 {
					lit = n.Args[0]
				}
			case *ast.CompositeLit:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "Error" {
					for _, el := range n.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok && kv.Key.(*ast.Ident).Name == "Code" {
							lit = kv.Value
						}
					}
				}
			}
			if b, ok := lit.(*ast.BasicLit); ok && b.Kind == gotoken.STRING {
				code, _ := strconv.Unquote(b.Value)
				used[code] = fset.Position(b.Pos()).String()
			}
			return true
		})
	}
	require.Greater(t, len(used), 25, "the scan finds the codes")
	for code, where := range used {
		_, ok := codes[code]
		require.True(t, ok, "%s: error code %q has no status in the codes table", where, code)
	}
	for code, status := range codes {
		_, ok := used[code]
		require.True(t, ok, "code %q (%d) is in the table but never used", code, status)
	}
	require.Equal(t, http.StatusBadRequest, (&Error{Code: "invalid_limit"}).Status(), "query parameters' own codes")
	require.Equal(t, http.StatusInternalServerError, (&Error{Code: "no_such_code"}).Status())
}
