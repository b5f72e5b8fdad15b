// Command hello prints its build mark; the gobuildtest tests build it.
package main

import "fmt"

var mark = "unset"

func main() { fmt.Println("hello", mark) }
