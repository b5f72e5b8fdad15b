// Command gourl is an aws-lambda-go function URL handler written with
// lambdaurl (an http.Handler, streamed through the Runtime API): it writes
// a line stamped with the function's clock, waits, writes another.
package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/lambdaurl"
)

func main() {
	lambdaurl.Start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Go", r.URL.Path)
		http.SetCookie(w, &http.Cookie{Name: "go", Value: "1"})
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "first %d\n", time.Now().UnixMilli())
		time.Sleep(time.Second)
		fmt.Fprintf(w, "second %d\n", time.Now().UnixMilli())
	}))
}
