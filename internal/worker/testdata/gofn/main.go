// Command gofn is a test function for the worker tests (aws-lambda-go).
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Action string `json:"action"`
	Value  string `json:"value"`
}

func handle(ctx context.Context, ev event) (any, error) {
	fmt.Printf("handling %s\n", ev.Action)
	switch ev.Action {
	case "echo":
		return map[string]string{"value": ev.Value}, nil
	case "env":
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		return env, nil
	case "sleep":
		time.Sleep(time.Hour)
	case "panic":
		panic(ev.Value)
	case "exit":
		os.Exit(2)
	case "alloc":
		var hog [][]byte
		for i := 0; i < 4096; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			hog = append(hog, b)
		}
		return len(hog), nil
	}
	return nil, fmt.Errorf("unknown action %q", ev.Action)
}

func main() {
	fmt.Println("init line")
	lambda.Start(handle)
}
