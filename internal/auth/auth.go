// Package auth is the vocabulary of authentication and tenancy that every
// API handler shares, without the machinery behind it: who is calling (a
// Caller, resolved once per request by the sigv4 middleware and carried in
// the request's context), the access keys callers sign with, and the
// server's authentication mode.
//
// Every Lambda and Flint API request acts on behalf of exactly one 12-digit
// account, the caller's. Handlers read it with AccountOf; a request that
// never passed through the middleware (a handler driven directly by a unit
// test) acts on the fallback account the handler was configured with.
package auth

import (
	"context"
	"fmt"
	"time"
)

// Caller is the authenticated identity of one API request.
type Caller struct {
	// Account is the 12-digit account the request acts on.
	Account string
	// AccessKeyID is the key the request was signed with; "" when the
	// server runs in ModeDev and did not verify the signature.
	AccessKeyID string
	// Root is true for a server's root key (and for every request in
	// ModeDev): it may manage access keys and read server-wide endpoints.
	Root bool
}

// Principal is the caller as IAM would name it in a message, e.g.
// "arn:aws:iam::123456789012:root". Flint keys belong to an account and
// to no IAM user or role, so the account's root principal names them.
func (c Caller) Principal() string { return "arn:aws:iam::" + c.Account + ":root" }

type callerKey struct{}

// WithCaller returns a context carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerOf returns the caller a context carries.
func CallerOf(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// AccountOf returns the caller's account, or fallback when ctx carries no
// caller (a handler used without the middleware).
func AccountOf(ctx context.Context, fallback string) string {
	if c, ok := CallerOf(ctx); ok {
		return c.Account
	}
	return fallback
}

// Key is an access key: an id and a secret that signs requests of one
// account. SigV4 is symmetric (the server recomputes the HMAC), so the
// store keeps the secret itself; see docs/auth.md for that trade-off.
type Key struct {
	AccessKeyID     string    `json:"AccessKeyId"`
	SecretAccessKey string    `json:"SecretAccessKey,omitempty"`
	Account         string    `json:"Account"`
	Root            bool      `json:"Root,omitempty"`
	Created         time.Time `json:"Created"`
}

// Mode says how a server authenticates requests.
type Mode string

const (
	// ModeRequired verifies the SigV4 signature of every API request
	// against the key store; the key decides the account.
	ModeRequired Mode = "required"
	// ModeDev accepts any request, signed or not, as the root of the
	// default account. For a laptop's loopback only.
	ModeDev Mode = "dev"
)

// ParseMode reads a --auth flag value; "" is returned as "" (the caller
// picks the default).
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeRequired, ModeDev:
		return Mode(s), nil
	}
	return "", fmt.Errorf("auth mode %q: want %q or %q", s, ModeRequired, ModeDev)
}

// ValidAccount reports whether s is a 12-digit account id.
func ValidAccount(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
