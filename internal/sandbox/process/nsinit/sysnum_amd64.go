package nsinit

// System call numbers and constants package syscall lacks.
const (
	sysSeccomp           = 317
	sysCloseRange        = 436
	sysMoveMount         = 429
	seccompSetModeFilter = 1
	closeRangeCloexec    = 4
)
