package nsinit

// The sandbox init starts here, in this package's initialiser, rather than
// in main: the driver starts the sandbox init by re-executing the Flint
// binary (by default), and Go runs the initialisers of every package
// linked into it (the AWS SDK's, NATS server's...) before main.
//
// Go initialises packages in import-path order among those whose imports
// are all initialised (cmd/link's inittask schedule). A package that
// imports os, fmt, encoding/json or x/sys/unix becomes ready only after
// dozens of others that sort before it (crypto/..., encoding/gob,
// github.com/aws/..., github.com/elastic/...), whose initialisers and page
// faults cost a 41 MB binary ~1 ms per sandbox. This package therefore
// imports only errors, runtime, syscall and unsafe (and privdrop, which
// does the same): it becomes ready right after syscall, before time, os
// and everything heavy, and the init then never returns. It cannot use
// os.Args (package os is not initialised yet) and reads its command line
// from /proc instead; see isInit. TestInitRunsEarly (package process) checks the order.
//
// MaybeRun in main (or in a test binary's TestMain) stays the documented
// entry point: it is a no-op once this has run, and covers any build where
// this file's initialiser would not come first.
//
// Outside a sandbox's init (no marker in the command line) this does
// nothing.
func init() { MaybeRun() }
