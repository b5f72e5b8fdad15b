package nsinit

// System call numbers and constants package syscall lacks.
const (
	sysSeccomp           = 277
	sysCloseRange        = 436
	sysMoveMount         = 429
	seccompSetModeFilter = 1
	closeRangeCloexec    = 4
)
