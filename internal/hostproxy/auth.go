package hostproxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
)

// Every request to the worker port carries the cluster's worker port
// token in "Authorization: Bearer <token>"; the server answers any other
// request 401 {"kind":"unauthorized"} before reading its body. The token
// is derived from the cluster key (Token): nodes share the key (the
// flint-secrets KV bucket, or --cluster-secret-file), and the key itself
// never travels. Without TLS on the worker port (docs/cluster.md) anyone
// who can read its traffic can read the token: keep the port on a private
// network.

// MinKeySize is the shortest cluster key accepted.
const MinKeySize = 16

// kindUnauthorized is the error kind of a request without the right token.
const kindUnauthorized = "unauthorized"

// Token derives the worker port token from the cluster key.
func Token(key []byte) (string, error) {
	if len(key) < MinKeySize {
		return "", errors.New("hostproxy: the cluster key is shorter than 16 bytes")
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("flint worker port v1"))
	return hex.EncodeToString(m.Sum(nil)), nil
}

// authorized reports whether r carries token.
func authorized(r *http.Request, token string) bool {
	got := r.Header.Get("Authorization")
	const scheme = "Bearer "
	if len(got) <= len(scheme) || got[:len(scheme)] != scheme {
		return false
	}
	return hmac.Equal([]byte(got[len(scheme):]), []byte(token))
}
