package e2e

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/flintdev/flint/internal/polltest"
)

type stats struct {
	Goroutines     int    `json:"goroutines"`
	OpenFDs        int    `json:"openFDs"`
	HeapAllocBytes uint64 `json:"heapAllocBytes"`
	Sandboxes      struct{ Idle, Busy, Creating int }
}

func (s *flintServer) stats(t *testing.T) stats {
	t.Helper()
	resp, err := http.Get(s.url() + "/flint/v1/stats?gc=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// settledStats polls the server's stats until two readings in a row agree
// on goroutines and fds (closed connections take a moment to wind down).
func (s *flintServer) settledStats(t *testing.T) stats {
	t.Helper()
	prev := s.stats(t)
	for range 100 {
		time.Sleep(20 * time.Millisecond)
		cur := s.stats(t)
		if cur.Goroutines == prev.Goroutines && cur.OpenFDs == prev.OpenFDs {
			return cur
		}
		prev = cur
	}
	t.Fatalf("server stats did not settle: %+v", prev)
	return prev
}

// maxOverlap is the largest number of [start, end) intervals that overlap.
func maxOverlap(iv [][2]int64) int {
	type ev struct {
		t int64
		d int
	}
	var evs []ev
	for _, i := range iv {
		evs = append(evs, ev{i[0], 1}, ev{i[1], -1})
	}
	sort.Slice(evs, func(a, b int) bool {
		if evs[a].t != evs[b].t {
			return evs[a].t < evs[b].t
		}
		return evs[a].d < evs[b].d // ends before starts at the same ms
	})
	cur, best := 0, 0
	for _, e := range evs {
		cur += e.d
		best = max(best, cur)
	}
	return best
}

// TestReservedConcurrencyBurst: reserved concurrency 2, 20 concurrent slow
// invocations. Never more than 2 run at once (from the functions' own
// clocks), the rest get 429 with Lambda's Reason at once, and the server's
// goroutines, fds and heap return to their baseline.
func TestReservedConcurrencyBurst(t *testing.T) {
	s := startServer(t, t.TempDir(), "--stats-gc") // stats?gc=true
	// Our own transport, so that the client's idle keep-alive connections
	// (a goroutine and an fd each on the server) can be closed before
	// comparing with the baseline.
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	c := lambda.New(lambda.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.url()), RetryMaxAttempts: 1,
		Credentials: s.lambda().Options().Credentials, HTTPClient: &http.Client{Transport: tr},
	})
	createGoFn(t, c, "burst", nil)
	if _, err := c.PutFunctionConcurrency(ctxT(t, 10*time.Second), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("burst"), ReservedConcurrentExecutions: aws.Int32(2),
	}); err != nil {
		t.Fatal(err)
	}
	// Warm both sandboxes the reservation allows, so the baseline counts
	// their goroutines and fds.
	var warm sync.WaitGroup
	for range 2 {
		warm.Add(1)
		go func() {
			defer warm.Done()
			asReply(t, invoke(t, c, "burst", map[string]any{"action": "sleep", "ms": 300}, false))
		}()
	}
	warm.Wait()
	tr.CloseIdleConnections()
	base := s.settledStats(t)
	if base.Sandboxes.Idle != 2 {
		t.Fatalf("%d idle sandboxes after warming, want 2", base.Sandboxes.Idle)
	}

	const n = 20
	var (
		mu        sync.Mutex
		intervals [][2]int64
		refused   [][2]int64 // each 429's request: sent, answered (Unix ms)
		throttled int
		wg        sync.WaitGroup
	)
	payload, _ := json.Marshal(map[string]any{"action": "sleep", "ms": 800})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := time.Now().UnixMilli()
			out, err := c.Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String("burst"), Payload: payload})
			mu.Lock()
			defer mu.Unlock()
			var tm *types.TooManyRequestsException
			switch {
			case errors.As(err, &tm):
				throttled++
				if tm.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
					t.Errorf("429 Reason %q", tm.Reason)
				}
				if aws.ToString(tm.RetryAfterSeconds) == "" {
					t.Error("429 without Retry-After")
				}
				refused = append(refused, [2]int64{sent, time.Now().UnixMilli()})
			case err != nil:
				t.Errorf("invoke: %v", err)
			default:
				var r goReply
				if err := json.Unmarshal(out.Payload, &r); err != nil || out.FunctionError != nil {
					t.Errorf("payload %s", out.Payload)
					return
				}
				intervals = append(intervals, [2]int64{r.StartMs, r.EndMs})
			}
		}()
	}
	wg.Wait()
	if got := maxOverlap(intervals); got > 2 {
		t.Errorf("%d invocations ran at once, reserved concurrency is 2", got)
	}
	if len(intervals) < 2 || throttled == 0 || len(intervals)+throttled != n {
		t.Errorf("ran %d, throttled %d of %d", len(intervals), throttled, n)
	}
	// Refused, not queued for a slot: a request sent while the first
	// admitted invocations still ran (they sleep 800 ms) is answered 429
	// before any of them ends. The sandboxes share the host's clock.
	if len(intervals) > 0 {
		firstEnd := intervals[0][1]
		for _, iv := range intervals {
			firstEnd = min(firstEnd, iv[1])
		}
		for _, r := range refused {
			if r[0] < firstEnd && r[1] > firstEnd {
				t.Errorf("a 429 came %d ms after an admitted invocation ended: it waited for a slot instead of refusing", r[1]-firstEnd)
			}
		}
	}
	t.Logf("burst of %d: %d ran (max %d at once), %d throttled", n, len(intervals), maxOverlap(intervals), throttled)

	tr.CloseIdleConnections()
	polltest.Check(t, 20*time.Second, "the burst's sandboxes and resources to be released", func() error {
		st := s.stats(t)
		if st.Sandboxes.Idle+st.Sandboxes.Busy+st.Sandboxes.Creating != 2 || st.Goroutines > base.Goroutines+5 || st.OpenFDs > base.OpenFDs+5 || st.HeapAllocBytes > base.HeapAllocBytes+16<<20 {
			return errorf("after the burst %+v, baseline %+v", st, base)
		}
		return nil
	})
	st := s.stats(t)
	t.Logf("baseline goroutines %d fds %d heap %d KiB; after %d / %d / %d KiB", base.Goroutines, base.OpenFDs, base.HeapAllocBytes>>10, st.Goroutines, st.OpenFDs, st.HeapAllocBytes>>10)
}

// TestVersionsAliasesProvisioned: publish, invoke by version and alias,
// weighted routing, $LATEST updates leave versions alone, provisioned
// concurrency pre-initialises sandboxes.
func TestVersionsAliasesProvisioned(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.lambda()
	createGoFn(t, c, "ver", nil)
	v1, err := c.PublishVersion(ctxT(t, 10*time.Second), &lambda.PublishVersionInput{FunctionName: aws.String("ver")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(v1.Version) != "1" {
		t.Fatalf("first version %q", aws.ToString(v1.Version))
	}
	if _, err := c.UpdateFunctionCode(ctxT(t, 60*time.Second), &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("ver"), ZipFile: goFnZip2, Publish: true}); err != nil {
		t.Fatal(err)
	}
	invokeQ := func(qualifier string) (goReply, string, string) {
		t.Helper()
		out, err := c.Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String("ver"), Qualifier: aws.String(qualifier), Payload: []byte(`{}`), LogType: types.LogTypeTail})
		if err != nil {
			t.Fatalf("invoke %s: %v", qualifier, err)
		}
		return asReply(t, out), aws.ToString(out.ExecutedVersion), decodeTail(t, out)
	}
	if r, ev, _ := invokeQ("1"); r.Build != "v1" || ev != "1" {
		t.Errorf("version 1 ran build %s (executed %s)", r.Build, ev)
	}
	if r, ev, _ := invokeQ("2"); r.Build != "v2" || ev != "2" {
		t.Errorf("version 2 ran build %s (executed %s)", r.Build, ev)
	}
	if r, ev, _ := invokeQ("$LATEST"); r.Build != "v2" || ev != "$LATEST" {
		t.Errorf("$LATEST ran build %s (executed %s)", r.Build, ev)
	}

	// A weighted alias: 30% to version 2.
	if _, err := c.CreateAlias(ctxT(t, 10*time.Second), &lambda.CreateAliasInput{
		FunctionName: aws.String("ver"), Name: aws.String("live"), FunctionVersion: aws.String("1"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.3}},
	}); err != nil {
		t.Fatal(err)
	}
	const n = 200
	got := map[string]int{}
	for range n {
		r, ev, _ := invokeQ("live")
		got[ev]++
		if want := map[string]string{"1": "v1", "2": "v2"}[ev]; r.Build != want {
			t.Fatalf("executed version %s ran build %s", ev, r.Build)
		}
	}
	sigma := math.Sqrt(n * 0.3 * 0.7)
	if d := math.Abs(float64(got["2"]) - n*0.3); d > 5*sigma || got["1"]+got["2"] != n {
		t.Errorf("alias split %v over %d, want ~30%% on version 2 (±5σ = %.0f)", got, n, 5*sigma)
	}
	t.Logf("alias at weight 0.3: %v", got)

	// Provisioned concurrency on the alias's version: 2 sandboxes ready
	// before the first invocation, and the first 2 invocations are warm.
	if _, err := c.PutProvisionedConcurrencyConfig(ctxT(t, 10*time.Second), &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("ver"), Qualifier: aws.String("2"), ProvisionedConcurrentExecutions: aws.Int32(2),
	}); err != nil {
		t.Fatal(err)
	}
	polltest.Check(t, 30*time.Second, "version 2's provisioned concurrency", func() error {
		pc, err := c.GetProvisionedConcurrencyConfig(ctxT(t, 10*time.Second), &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("ver"), Qualifier: aws.String("2")})
		if err != nil {
			return err
		}
		if pc.Status != types.ProvisionedConcurrencyStatusEnumReady || aws.ToInt32(pc.AvailableProvisionedConcurrentExecutions) != 2 {
			return errorf("status %s, available %d", pc.Status, aws.ToInt32(pc.AvailableProvisionedConcurrentExecutions))
		}
		return nil
	})
	var wg sync.WaitGroup
	tails := make(chan string, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String("ver"), Qualifier: aws.String("2"), Payload: []byte(`{"action":"sleep","ms":300}`), LogType: types.LogTypeTail})
			if err != nil {
				t.Error(err)
				return
			}
			tails <- decodeTail(t, out)
		}()
	}
	wg.Wait()
	close(tails)
	for tail := range tails {
		if strings.Contains(tail, "Init Duration") {
			t.Errorf("a provisioned invocation was cold:\n%s", tail)
		}
	}

	// Updating $LATEST does not change what version 1 runs.
	if _, err := c.UpdateFunctionConfiguration(ctxT(t, 10*time.Second), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("ver"), Environment: &types.Environment{Variables: map[string]string{"VERSION_MARK": "latest-only"}},
	}); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := invokeQ("1"); r.Version != "" || r.Build != "v1" {
		t.Errorf("version 1 after a $LATEST update: %+v", r)
	}
	if r, _, _ := invokeQ("$LATEST"); r.Version != "latest-only" {
		t.Errorf("$LATEST after its update: %+v", r)
	}
}
