// Package clients embeds Flint's Lambda runtime clients. These files run
// INSIDE a sandbox (mounted at /var/runtime), never on the host:
// python/bootstrap.py (stdlib only) and node/bootstrap.js (core modules
// only). Package runtimes writes them out for the worker.
package clients

import "embed"

// FS holds python/ and node/.
//
//go:embed python/bootstrap.py node/bootstrap.js
var FS embed.FS
