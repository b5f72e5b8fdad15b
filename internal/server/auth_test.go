package server

import (
	"strings"
	"testing"

	"github.com/flintdev/flint/internal/auth"
)

// TestAuthModeDefault: dev mode is the default only on loopback; anywhere
// else the mode must be said, and "dev" is honoured when it is.
func TestAuthModeDefault(t *testing.T) {
	cases := []struct {
		listen string
		mode   auth.Mode
		want   auth.Mode // "" for a refusal
	}{
		{"127.0.0.1:9000", "", auth.ModeDev},
		{"[::1]:0", "", auth.ModeDev},
		{"localhost:9000", "", auth.ModeDev},
		{"0.0.0.0:9000", "", ""},
		{":9000", "", ""},
		{"10.1.2.3:9000", "", ""},
		{"flint.example:9000", "", ""},
		{"0.0.0.0:9000", auth.ModeDev, auth.ModeDev},
		{"0.0.0.0:9000", auth.ModeRequired, auth.ModeRequired},
		{"127.0.0.1:9000", auth.ModeRequired, auth.ModeRequired},
		{"127.0.0.1:9000", "maybe", ""},
	}
	for _, c := range cases {
		cfg := Config{Listen: c.listen, DataDir: t.TempDir(), Auth: c.mode}
		err := cfg.Validate()
		switch {
		case c.want == "" && err == nil:
			t.Errorf("listen %s auth %q: accepted as %q, want a refusal", c.listen, c.mode, cfg.Auth)
		case c.want == "" && c.mode == "" && !strings.Contains(err.Error(), "--auth required"):
			t.Errorf("listen %s: refusal %q does not say what to do", c.listen, err)
		case c.want != "" && (err != nil || cfg.Auth != c.want):
			t.Errorf("listen %s auth %q: %v, mode %q, want %q", c.listen, c.mode, err, cfg.Auth, c.want)
		}
	}
}
