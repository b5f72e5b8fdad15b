package server

import (
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/logstore"
	"github.com/flintdev/flint/internal/writegate"
)

var fnNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// logsHandler serves GET /flint/v1/functions/{name}/logs[?tail=N][&follow=true]:
// the function's invocation logs as plain text, oldest first; with follow
// the response stays open and streams new invocations' logs as they end.
// The function is the caller's (defaultAccount's without a caller).
func logsHandler(logs *logstore.Store, defaultAccount string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !fnNameRE.MatchString(name) {
			lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidParameterValue, "invalid function name %q", name))
			return
		}
		account := auth.AccountOf(r.Context(), defaultAccount)
		opts := logstore.ReadOptions{Follow: r.URL.Query().Get("follow") == "true"}
		if v := r.URL.Query().Get("tail"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidParameterValue, "tail must be a non-negative integer"))
				return
			}
			opts.Tail = n
		}
		if opts.Follow {
			// A follow stays open as long as the client wants it: past
			// the server's read and write timeouts.
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		flusher, _ := w.(http.Flusher)
		err := logs.Read(r.Context(), account, name, opts, func(e logstore.Entry) error {
			if _, err := w.Write(e.Data); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
			return nil
		})
		if err != nil && r.Context().Err() == nil {
			// Headers are gone; say it in the stream (in the user's
			// terms: the cause goes to no client).
			w.Write([]byte("\nflint: reading logs failed: " + lambdaerr.Public(writegate.Describe("logs", err)).Message + "\n"))
		}
	})
}
