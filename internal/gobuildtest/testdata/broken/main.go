// Command broken does not compile; the gobuildtest tests check that the
// compiler's message reaches the caller.
package main

func main() { undefinedOnPurpose() }
