// Package console is Flint's web console: plain HTML, CSS and JavaScript
// (no build step, no framework, nothing fetched from elsewhere) embedded in
// the binary and served by `flint server` at /console/. The page talks only
// to Flint's own HTTP API — Lambda's API, /flint/v1/... and /metrics — with
// the same authentication as any client (it signs requests with SigV4 when
// the user gives it keys), so it can show nothing the API does not.
//
// docs/console.md has the pages and the design.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Prefix is where the console is mounted.
const Prefix = "/console/"

// Handler serves the console's files under Prefix; mount it on
// "GET /console/". The files change only with the binary, so they may be
// cached briefly; index.html is revalidated so an upgrade shows at once.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
