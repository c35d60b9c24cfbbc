// Package web is the browser client served at / : a small chat page built on chatd.js (the
// protocol module, also served at /web/chatd.js, with its modules under /web/chatd/), embedded
// so the binary is the whole deployment.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// FS returns the client's files (index.html at the root).
func FS() http.FileSystem {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded directory is fixed at compile time
	}
	return http.FS(sub)
}
