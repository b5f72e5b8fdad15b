// Command benchfn is the function `flint bench` runs: an aws-lambda-go
// handler that does nothing unless asked to sleep, and reports when it
// started and how much private memory its process holds.
package main

import (
	"bytes"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	SleepMs int  `json:"sleepMs"`
	Mem     bool `json:"mem"`
	Env     bool `json:"env"`
}

type reply struct {
	StartNs   int64 `json:"startNs"`
	Count     int   `json:"count"`
	RssAnonKB int64 `json:"rssAnonKB,omitempty"`
	RssKB     int64 `json:"rssKB,omitempty"`
	// MaxConcurrency is AWS_LAMBDA_MAX_CONCURRENCY as the runtime got it.
	MaxConcurrency string `json:"maxConcurrency,omitempty"`
}

// count is atomic: with AWS_LAMBDA_MAX_CONCURRENCY > 1 aws-lambda-go runs
// handlers concurrently.
var count atomic.Int64

func handle(ev event) (reply, error) {
	r := reply{StartNs: time.Now().UnixNano()}
	r.Count = int(count.Add(1))
	if ev.Env {
		r.MaxConcurrency = os.Getenv("AWS_LAMBDA_MAX_CONCURRENCY")
	}
	if ev.SleepMs > 0 {
		time.Sleep(time.Duration(ev.SleepMs) * time.Millisecond)
	}
	if ev.Mem {
		r.RssAnonKB, r.RssKB = statusKB("RssAnon:"), statusKB("VmRSS:")
	}
	return r, nil
}

// statusKB reads one kB field of /proc/self/status.
func statusKB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	i := bytes.Index(b, []byte(field))
	if i < 0 {
		return 0
	}
	rest := b[i+len(field):]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	rest = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))
	n, _ := strconv.ParseInt(string(rest), 10, 64)
	return n
}

func main() { lambda.Start(handle) }
