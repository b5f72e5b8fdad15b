package keystore

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/lambdaerr"
)

// Paths of the key-management endpoints; every one needs a root key.
const (
	KeysPath = "/flint/v1/keys"
)

// CreateRequest is the body of POST /flint/v1/keys.
type CreateRequest struct {
	Account string `json:"Account"`
}

// ListResponse is the body of GET /flint/v1/keys.
type ListResponse struct {
	Keys []auth.Key `json:"Keys"`
}

// Handler serves, for root callers only:
//
//	POST   /flint/v1/keys        {"Account": "123456789012"} → 201 {"AccessKeyId","SecretAccessKey","Account",...}
//	GET    /flint/v1/keys        → 200 {"Keys": [...]} (no secrets)
//	DELETE /flint/v1/keys/{id}   → 204
//
// Errors are Lambda-shaped (lambdaerr.WriteHTTP).
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+KeysPath, s.serveCreate)
	mux.HandleFunc("GET "+KeysPath, s.serveList)
	mux.HandleFunc("DELETE "+KeysPath+"/{id}", s.serveDelete)
	return requireRoot(mux)
}

// requireRoot refuses callers without a root key. The sigv4 middleware
// refuses them first; this holds even if it were mounted without it.
func requireRoot(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := auth.CallerOf(r.Context()); !ok || !c.Root {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Amzn-ErrorType", "AccessDeniedException")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"message":"Managing access keys needs the server's root key."}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Store) serveCreate(w http.ResponseWriter, r *http.Request) {
	var req CreateRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<10))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidRequestContent, `the body must be {"Account": "<12-digit id>"}`))
		return
	}
	k, err := s.Create(r.Context(), req.Account, false)
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, k)
}

func (s *Store) serveList(w http.ResponseWriter, r *http.Request) {
	keys, err := s.List(r.Context())
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	if keys == nil {
		keys = []auth.Key{}
	}
	writeJSON(w, http.StatusOK, ListResponse{Keys: keys})
}

func (s *Store) serveDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.Delete(r.Context(), r.PathValue("id")); err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
