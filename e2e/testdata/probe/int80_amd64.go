package main

// int80 makes a 32-bit ABI system call; it returns the raw result (a
// negative errno on failure).
func int80(trap, a1, a2, a3 uintptr) uintptr

const haveInt80 = true
