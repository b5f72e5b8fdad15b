package nsinit

// The sandbox init starts here, in this package's initialiser, rather than
// in main: the driver starts the sandbox init by re-executing the Flint
// binary (by default), and Go runs the initialisers of every package
// linked into it (the AWS SDK's, NATS server's...: 7 ms) before main.
// Go initialises a package right after its imports and, among packages
// ready at the same time, in import-path order, so only those ordered
// before this one run first (1 ms); the init then never returns. This
// package imports only what the init needs (no path/filepath, which
// orders late, see join) for that reason. MaybeRun in main (or in a test
// binary's TestMain) stays the documented entry point: it is a no-op
// once this has run, and covers any build where this file's initialiser
// would not come first.
//
// Outside a sandbox's init (no marker in os.Args) this does nothing.
func init() { MaybeRun() }
