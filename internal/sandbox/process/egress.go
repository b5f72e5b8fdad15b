package process

import "github.com/flintdev/flint/internal/sandbox/egress"

// EgressConfig is the egress of the process driver: each sandbox gets a
// veth pair (see egress.Config).
type EgressConfig = egress.Config

// Defaults of EgressConfig (see package egress).
const (
	DefaultEgressName = egress.DefaultName
	SandboxIface      = egress.SandboxIface
)

// DefaultEgressPool is egress.DefaultPool.
var DefaultEgressPool = egress.DefaultPool
