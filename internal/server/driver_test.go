package server

import (
	"strings"
	"testing"

	"github.com/flintdev/flint/internal/sandbox/process"
)

// TestSandboxDriverChoice: process is the default, microvm is accepted,
// anything else and egress with microvm are refused in the user's terms.
func TestSandboxDriverChoice(t *testing.T) {
	cases := []struct {
		driver string
		egress bool
		want   string // the chosen driver, or a refusal's text
	}{
		{"", false, "process"},
		{"process", false, "process"},
		{"microvm", false, "microvm"},
		{"firecracker", false, "unknown sandbox driver"},
		{"microvm", true, "microvm"},
		{"process", true, "process"},
	}
	for _, c := range cases {
		cfg := Config{DataDir: t.TempDir(), SandboxDriver: c.driver}
		if c.egress {
			cfg.SandboxEgress = &process.EgressConfig{}
		}
		err := cfg.Validate()
		switch {
		case err != nil && !strings.Contains(err.Error(), c.want):
			t.Errorf("driver %q egress %v: %v, want %q", c.driver, c.egress, err, c.want)
		case err == nil && cfg.SandboxDriver != c.want:
			t.Errorf("driver %q egress %v: chose %q, want %q", c.driver, c.egress, cfg.SandboxDriver, c.want)
		}
	}
}
