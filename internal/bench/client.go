package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// clientName says which client measures: a plain net/http client posting
// to the Invoke URL, the same for Flint and the peer, so the numbers are
// the servers' and not an SDK's.
const clientName = "net/http (plain POST to /2015-03-31/functions/NAME/invocations)"

// invoker posts invocations to one Invoke URL. Safe for concurrent use.
type invoker struct {
	url string
	hc  *http.Client
}

// newHTTPClient is a plain keep-alive client that opens at most conns
// connections at once and keeps them all open between requests.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxConnsPerHost:     conns,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 5 * time.Minute,
	}
}

// invokeURL is Lambda's Invoke URL of function name at base.
func invokeURL(base, name string) string {
	return strings.TrimSuffix(base, "/") + "/2015-03-31/functions/" + name + "/invocations"
}

// response is what one invocation returned.
type response struct {
	status    int
	body      []byte
	logResult string // decoded X-Amz-Log-Result
	funcErr   string // X-Amz-Function-Error
	requestID string
}

// invoke posts payload; headers may add X-Amz-Invocation-Type or
// X-Amz-Log-Type. A non-2xx status or a function error is an error.
func (c *invoker) invoke(ctx context.Context, payload []byte, headers ...string) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("invoke %s: read body: %w", c.url, err)
	}
	r := &response{status: resp.StatusCode, body: body, funcErr: resp.Header.Get("X-Amz-Function-Error"),
		requestID: resp.Header.Get("X-Amzn-RequestId")}
	if lr := resp.Header.Get("X-Amz-Log-Result"); lr != "" {
		if b, err := base64.StdEncoding.DecodeString(lr); err == nil {
			r.logResult = string(b)
		}
	}
	if resp.StatusCode/100 != 2 {
		return r, fmt.Errorf("invoke %s: %s: %.300s", c.url, resp.Status, body)
	}
	if r.funcErr != "" || bytes.Contains(body, []byte(`"errorType"`)) {
		return r, fmt.Errorf("invoke %s: function error %s: %.300s", c.url, r.funcErr, body)
	}
	return r, nil
}

// fnReply is what the bench function returns.
type fnReply struct {
	StartNs   int64  `json:"startNs"`
	Count     int    `json:"count"`
	RssAnonKB int64  `json:"rssAnonKB"`
	RssKB     int64  `json:"rssKB"`
	MaxConc   string `json:"maxConcurrency"`
}

func parseReply(b []byte) (fnReply, error) {
	var r fnReply
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("bench function reply %.200q: %w", b, err)
	}
	return r, nil
}

// loadResult is what closed-loop clients measured.
type loadResult struct {
	lat     []time.Duration
	errs    int
	elapsed time.Duration
	lastErr error
}

func (l loadResult) rps() float64 {
	if l.elapsed <= 0 {
		return 0
	}
	return float64(len(l.lat)) / l.elapsed.Seconds()
}

// closedLoop runs clients goroutines, each calling call (with its index)
// back to back, for d (or until n calls in all when n > 0), and collects
// latencies of the calls that succeeded.
func closedLoop(ctx context.Context, clients int, d time.Duration, n int, call func(ctx context.Context, client int) error) loadResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	budget := make(chan struct{}, max(n, 1))
	for range n {
		budget <- struct{}{}
	}
	start := time.Now()
	deadline := start.Add(d)
	for client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			errs := 0
			var lastErr error
			for ctx.Err() == nil {
				if n > 0 {
					select {
					case <-budget:
					default:
						goto done
					}
				} else if !time.Now().Before(deadline) {
					break
				}
				t0 := time.Now()
				if err := call(ctx, client); err != nil {
					errs++
					lastErr = err
					if errs > 100 && len(lat) == 0 {
						break // the target is down; stop hammering it
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
		done:
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errs += errs
			if lastErr != nil {
				res.lastErr = lastErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}
