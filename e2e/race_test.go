//go:build race

package e2e

// raceEnabled: this test binary was built with -race, and the flint
// server it starts is built with it too.
const raceEnabled = true
