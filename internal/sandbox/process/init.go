package process

import (
	"github.com/flintdev/flint/internal/sandbox/process/nsinit"
)

// MaybeRunInit runs the sandbox init if this process was started as one by
// the driver (os.Args[1] == nsinit.Marker) and then never returns;
// otherwise it returns at once.
//
// The driver re-executes its own binary (Config.InitPath, by default
// /proc/self/exe) to get a Go init inside the new namespaces, so every
// binary that creates sandboxes must call MaybeRunInit first thing in main,
// and every test package that creates sandboxes first thing in TestMain:
//
//	func TestMain(m *testing.M) {
//		process.MaybeRunInit()
//		os.Exit(m.Run())
//	}
//
// Config.InitPath may instead name a small dedicated binary whose main
// calls nsinit.MaybeRun (see cmd/flint-sandbox-init): it starts faster than a
// re-executed big binary, whose package initialisers all run first.
func MaybeRunInit() {
	nsinit.MaybeRun()
}
