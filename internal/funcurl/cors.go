package funcurl

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/metadata"
)

// CORS as Lambda's URLs apply it: with a Cors configuration, a preflight
// (OPTIONS with Origin and Access-Control-Request-Method) is answered by
// the URL itself without invoking the function, and every other answer to
// an allowed Origin carries the configured Access-Control-* headers, which
// replace any the function set. Without a Cors configuration the function
// sees OPTIONS requests and its headers pass through.

// originAllowed returns the Access-Control-Allow-Origin value for origin
// ("" when the origin is not allowed).
func originAllowed(origin string, c *metadata.URLCors) string {
	if origin == "" || c == nil {
		return ""
	}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			if c.AllowCredentials {
				return origin // "*" is not allowed with credentials
			}
			return "*"
		}
		if strings.EqualFold(o, origin) {
			return origin
		}
	}
	return ""
}

// preflight answers a CORS preflight request when the URL has a Cors
// configuration; it reports whether it did.
func preflight(w http.ResponseWriter, r *http.Request, c *metadata.URLCors) bool {
	if c == nil || r.Method != http.MethodOptions || r.Header.Get("Origin") == "" ||
		r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	hdr := w.Header()
	if allow := originAllowed(r.Header.Get("Origin"), c); allow != "" {
		hdr.Set("Access-Control-Allow-Origin", allow)
		if len(c.AllowMethods) > 0 {
			hdr.Set("Access-Control-Allow-Methods", strings.Join(c.AllowMethods, ","))
		}
		if len(c.AllowHeaders) > 0 {
			hdr.Set("Access-Control-Allow-Headers", strings.Join(c.AllowHeaders, ","))
		}
		if c.AllowCredentials {
			hdr.Set("Access-Control-Allow-Credentials", "true")
		}
		if c.MaxAge > 0 {
			hdr.Set("Access-Control-Max-Age", strconv.Itoa(c.MaxAge))
		}
		if allow != "*" {
			hdr.Add("Vary", "Origin")
		}
	}
	hdr.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return true
}

// corsHeaders sets the CORS headers of an actual (non-preflight) answer.
func corsHeaders(hdr http.Header, r *http.Request, c *metadata.URLCors) {
	allow := originAllowed(r.Header.Get("Origin"), c)
	if allow == "" {
		return
	}
	hdr.Set("Access-Control-Allow-Origin", allow)
	if c.AllowCredentials {
		hdr.Set("Access-Control-Allow-Credentials", "true")
	}
	if len(c.ExposeHeaders) > 0 {
		hdr.Set("Access-Control-Expose-Headers", strings.Join(c.ExposeHeaders, ","))
	}
	if allow != "*" {
		hdr.Add("Vary", "Origin")
	}
}

// corsOwned reports whether header k is set by the URL's CORS settings
// (and so not taken from the function's answer).
func corsOwned(k string, c *metadata.URLCors) bool {
	return c != nil && strings.HasPrefix(strings.ToLower(k), "access-control-")
}
