package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/flintdev/flint/internal/natstest"
	"github.com/flintdev/flint/internal/polltest"
)

// clusterView is the part of GET /flint/v1/cluster the tests read.
type clusterView struct {
	Hosts []struct {
		ID        string   `json:"id"`
		Roles     []string `json:"roles"`
		MemoryMB  int      `json:"memoryMB"`
		Sandboxes int      `json:"sandboxes"`
	} `json:"hosts"`
	Backbone struct {
		Embedded  bool `json:"embedded"`
		Connected bool `json:"connected"`
	} `json:"backbone"`
}

func (s *flintServer) cluster(t testing.TB) clusterView {
	t.Helper()
	var v clusterView
	if code, err := httpGetJSON(s.url()+"/flint/v1/cluster", &v); err != nil || code != http.StatusOK {
		t.Fatalf("GET /flint/v1/cluster: %d %v", code, err)
	}
	return v
}

// startCluster starts a 3-node NATS cluster in the test process and one
// `flint server` per id on it, each with its own data dir and ports, and
// waits until every server sees every host.
func startCluster(t testing.TB, ids []string, extra ...string) (*natstest.Cluster, []*flintServer) {
	t.Helper()
	requireRoot(t)
	nc := natstest.Start(t, natstest.Config{Nodes: 3})
	var servers []*flintServer
	for _, id := range ids {
		args := append([]string{"--nats-url", nc.URLs(), "--host-id", id, "--sandbox-init", initBin}, extra...)
		servers = append(servers, startClusterNode(t, args...))
	}
	for _, s := range servers {
		polltest.Check(t, 20*time.Second, "every server to see every host", func() error {
			v := s.cluster(t)
			if len(v.Hosts) != len(ids) {
				return fmt.Errorf("%s sees %d hosts, want %d: %+v", s.url(), len(v.Hosts), len(ids), v.Hosts)
			}
			return nil
		})
	}
	return nc, servers
}

// startClusterNode starts one node. A NATS cluster seconds old may not
// answer a node's first requests: the server retries them (package
// jsretry), so a start must succeed at the first try.
func startClusterNode(t testing.TB, args ...string) *flintServer {
	t.Helper()
	s, err := startServerErr(t, t.TempDir(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestClusterSpreadsAndLimits: three `flint server`s on one 3-node NATS
// cluster. A function created through A invokes through B and C; 60
// concurrent cold starts spread over the hosts (each offers room for 32)
// all succeed; reserved concurrency 2 set through A holds across all three
// frontends under a burst of 30 (measured by the functions' own clocks),
// the rest answered 429 with Lambda's Reason.
func TestClusterSpreadsAndLimits(t *testing.T) {
	_, servers := startCluster(t, []string{"flint-a", "flint-b", "flint-c"}, "--host-memory", "4096")
	a, b, c := servers[0].lambda(), servers[1].lambda(), servers[2].lambda()

	createGoFn(t, a, "spread", func(in *lambda.CreateFunctionInput) { in.MemorySize = aws.Int32(128); in.Timeout = aws.Int32(30) })
	// B and C learn of the function through their metadata watch,
	// milliseconds after A stored it.
	waitVisible(t, "spread", b, c)
	for _, cl := range []*lambda.Client{b, c} {
		if r := asReply(t, invoke(t, cl, "spread", map[string]any{"name": "x"}, false)); r.Hello != "x" {
			t.Fatalf("reply %+v", r)
		}
	}

	// 60 at once, 20 through each frontend: each needs its own sandbox.
	const n = 60
	var wg sync.WaitGroup
	var mu sync.Mutex
	instances := map[string]bool{}
	errs := 0
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := []*lambda.Client{a, b, c}[i%3]
			payload, _ := json.Marshal(map[string]any{"action": "sleep", "ms": 4000, "name": fmt.Sprint(i)})
			out, err := cl.Invoke(ctxT(t, 120*time.Second), &lambda.InvokeInput{FunctionName: aws.String("spread"), Payload: payload})
			mu.Lock()
			defer mu.Unlock()
			if err != nil || out.FunctionError != nil {
				errs++
				if err == nil {
					err = fmt.Errorf("function error: %s", out.Payload)
				}
				t.Errorf("invocation %d through %s: %v", i, []string{"A", "B", "C"}[i%3], err)
				return
			}
			var r goReply
			json.Unmarshal(out.Payload, &r)
			instances[r.Instance] = true
		}()
	}
	// While they run, the sandboxes are on more than one host.
	var spread map[string]int
	polltest.Check(t, 60*time.Second, "sandboxes on at least two hosts", func() error {
		v := servers[2].cluster(t)
		spread = map[string]int{}
		total := 0
		for _, h := range v.Hosts {
			if h.Sandboxes > 0 {
				spread[h.ID] = h.Sandboxes
			}
			total += h.Sandboxes
		}
		if len(spread) < 2 || total < n {
			return fmt.Errorf("sandboxes per host %v (total %d)", spread, total)
		}
		return nil
	})
	wg.Wait()
	t.Logf("60 concurrent invocations through 3 frontends: %d errors, %d distinct sandboxes, sandboxes per host %v, %v",
		errs, len(instances), spread, time.Since(start).Round(time.Millisecond))
	if errs > 0 || len(instances) < n {
		t.Fatalf("%d errors, %d sandboxes for %d concurrent invocations", errs, len(instances), n)
	}
	// `flint cluster` prints the same view as a table.
	out, err := servers[0].flintCLI(t, "cluster")
	if err != nil {
		t.Fatalf("flint cluster: %v\n%s", err, out)
	}
	for _, want := range []string{"HOST", "flint-a", "flint-b", "flint-c", "frontend,poller,worker", "external NATS, connected"} {
		if !strings.Contains(out, want) {
			t.Errorf("flint cluster output lacks %q:\n%s", want, out)
		}
	}

	// Reserved concurrency 2, set through A, holds across A, B and C.
	createGoFn(t, a, "reserved", func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(30) })
	waitVisible(t, "reserved", b, c)
	if _, err := a.PutFunctionConcurrency(ctxT(t, 10*time.Second), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("reserved"), ReservedConcurrentExecutions: aws.Int32(2),
	}); err != nil {
		t.Fatal(err)
	}
	// The setting reaches B's and C's managers through the store's watch,
	// milliseconds after A stored it (logged as "reserved concurrency
	// set"); give it that time before the burst.
	time.Sleep(time.Second)
	const burst = 30
	var intervals [][2]int64
	throttled := 0
	payload, _ := json.Marshal(map[string]any{"action": "sleep", "ms": 1500})
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := []*lambda.Client{a, b, c}[i%3].Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String("reserved"), Payload: payload})
			mu.Lock()
			defer mu.Unlock()
			var tm *types.TooManyRequestsException
			switch {
			case errors.As(err, &tm):
				throttled++
				if tm.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
					t.Errorf("429 Reason %q", tm.Reason)
				}
			case err != nil:
				t.Errorf("invoke: %v", err)
			case out.FunctionError != nil:
				t.Errorf("function error: %s", out.Payload)
			default:
				var r goReply
				json.Unmarshal(out.Payload, &r)
				intervals = append(intervals, [2]int64{r.StartMs, r.EndMs})
			}
		}()
	}
	wg.Wait()
	t.Logf("reserved 2, burst of %d through 3 frontends: %d ran (max %d at once), %d throttled",
		burst, len(intervals), maxOverlap(intervals), throttled)
	if got := maxOverlap(intervals); got > 2 {
		t.Errorf("%d invocations ran at once across the cluster, reserved concurrency is 2", got)
	}
	if len(intervals) < 2 || len(intervals)+throttled != burst {
		t.Errorf("ran %d, throttled %d of %d", len(intervals), throttled, burst)
	}
}

// TestClusterWorkerLoss: two frontends (A, B) and two worker nodes (C,
// D); kill -9 of the worker running the invocations while they run
// through A and B. The invocations in flight on it end with an error
// within seconds; every invocation that starts 10 s after the kill
// succeeds, on the other worker.
func TestClusterWorkerLoss(t *testing.T) {
	// Each worker has room for everything the test runs (4 × 1024 MB sync,
	// 12 × 512 MB async), so the first (flint-c, by best fit) takes it all
	// and the other takes it all over once the first is gone.
	nc, fronts := startCluster(t, []string{"flint-a", "flint-b"}, "--roles", "frontend,poller",
		"--async-throttle-backoff-max", "2s")
	var workers []*flintServer
	for _, id := range []string{"flint-c", "flint-d"} {
		workers = append(workers, startClusterNode(t, "--nats-url", nc.URLs(), "--host-id", id,
			"--roles", "worker", "--host-memory", "16384", "--sandbox-init", initBin))
	}
	for _, s := range append(fronts, workers...) {
		polltest.Check(t, 20*time.Second, "every node to see the 4 hosts", func() error {
			if n := len(s.cluster(t).Hosts); n != 4 {
				return fmt.Errorf("%s sees %d hosts", s.url(), n)
			}
			return nil
		})
	}
	createGoFn(t, fronts[0].lambda(), "loss", func(in *lambda.CreateFunctionInput) { in.MemorySize = aws.Int32(1024); in.Timeout = aws.Int32(30) })
	createGoFn(t, fronts[0].lambda(), "loss-async", func(in *lambda.CreateFunctionInput) { in.MemorySize = aws.Int32(512); in.Timeout = aws.Int32(30) })
	waitVisible(t, "loss", fronts[1].lambda())
	waitVisible(t, "loss-async", fronts[1].lambda())
	survivors := fronts
	var wg sync.WaitGroup

	type result struct {
		start, end time.Time
		err        error
	}
	var (
		mu      sync.Mutex
		results []result
	)
	stop := make(chan struct{})
	const loops = 4
	for i := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := survivors[i%2].lambda()
			for {
				select {
				case <-stop:
					return
				default:
				}
				payload, _ := json.Marshal(map[string]any{"action": "sleep", "ms": 1000})
				r := result{start: time.Now()}
				out, err := cl.Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String("loss"), Payload: payload})
				if err == nil && out.FunctionError != nil {
					err = fmt.Errorf("function error: %s", out.Payload)
				}
				r.end, r.err = time.Now(), err
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				if err != nil {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	// Asynchronous events too: the pollers of A and B run them on the
	// workers; the ones lost with the worker run again.
	var payloads [][]byte
	for i := range 12 {
		// Long enough to be running when the worker goes.
		p, _ := json.Marshal(map[string]any{"action": "sleep", "ms": 6000, "name": fmt.Sprint("async-", i)})
		payloads = append(payloads, p)
	}
	asyncIDs, _ := sendEvents(t, fronts[0].lambda(), "loss-async", payloads, 4)

	// Kill the worker holding the most sandboxes while the loops run.
	time.Sleep(3 * time.Second)
	victim, most := 0, -1
	view := fronts[0].cluster(t)
	t.Logf("hosts at the kill: %+v", view.Hosts)
	for _, h := range view.Hosts {
		for i, id := range []string{"flint-c", "flint-d"} {
			if h.ID == id && h.Sandboxes > most {
				victim, most = i, h.Sandboxes
			}
		}
	}
	killed := time.Now()
	workers[victim].kill()
	time.Sleep(20 * time.Second)
	close(stop)
	wg.Wait()

	var before, inFlight, failedInFlight, after, failedAfter, between, failedBetween int
	var slowestFailure time.Duration
	for _, r := range results {
		switch {
		case r.start.Before(killed):
			before++
			if r.end.After(killed) {
				inFlight++
			}
			if r.err != nil && r.end.After(killed) {
				failedInFlight++
				slowestFailure = max(slowestFailure, r.end.Sub(killed))
			}
		case r.start.After(killed.Add(10 * time.Second)):
			after++
			if r.err != nil {
				failedAfter++
				t.Errorf("invocation %v after the kill failed: %v", r.start.Sub(killed).Round(time.Millisecond), r.err)
			}
		default:
			between++
			if r.err != nil {
				failedBetween++
				slowestFailure = max(slowestFailure, r.end.Sub(killed))
				t.Logf("invocation %v after the kill: %v", r.start.Sub(killed).Round(time.Millisecond), r.err)
			}
		}
	}
	t.Logf("kill -9 of worker %s (%d sandboxes) mid-burst: %d started before (%d in flight, of which %d failed), %d in the first 10 s (%d failed), %d after 10 s (%d failed); last failure %v after the kill",
		[]string{"flint-c", "flint-d"}[victim], most, before, inFlight, failedInFlight, between, failedBetween, after, failedAfter, slowestFailure.Round(time.Millisecond))
	if after == 0 {
		t.Fatal("no invocation ran 10 s after the kill")
	}
	if inFlight > 0 && failedInFlight == 0 {
		t.Errorf("none of the %d invocations in flight on the lost worker failed", inFlight)
	}
	if slowestFailure > 10*time.Second {
		t.Errorf("an invocation failed %v after the kill: failures should end within seconds", slowestFailure)
	}
	// Every event ran to success, the ones cut off by the loss again.
	retried := 0
	for id, st := range fronts[0].waitAllSettled(t, asyncIDs, 120*time.Second) {
		if st.Status != "succeeded" {
			t.Errorf("event %s: %s %+v", id, st.Status, st.Error)
		}
		if st.Attempts > 1 || st.Throttles > 0 {
			retried++
		}
	}
	if retried == 0 {
		t.Error("no event was running on the lost worker: the test did not test redelivery")
	}
	t.Logf("async: %d events all succeeded, %d after a retry or throttle", len(asyncIDs), retried)

	// Every frontend has dropped the lost host.
	for _, s := range survivors {
		polltest.Check(t, 10*time.Second, "the frontends to drop the lost host", func() error {
			if n := len(s.cluster(t).Hosts); n != 3 {
				return fmt.Errorf("%s lists %d hosts after the loss, want 3", s.url(), n)
			}
			return nil
		})
	}
}

// TestClusterDuplicateHostID: a second live node with the same --host-id
// refuses to start, saying why.
func TestClusterDuplicateHostID(t *testing.T) {
	nc, _ := startCluster(t, []string{"flint-dup"})
	s, err := startServerErr(t, t.TempDir(), "--nats-url", nc.URLs(), "--host-id", "flint-dup")
	if err == nil {
		s.stop()
		t.Fatal("a second node with host id flint-dup started")
	}
	if !strings.Contains(err.Error(), `host id "flint-dup" is already used by a live Flint node`) || !strings.Contains(err.Error(), "--host-id") {
		t.Fatalf("error does not say why: %v", err)
	}
}

// waitVisible waits until every client's node knows the function.
func waitVisible(t testing.TB, name string, clients ...*lambda.Client) {
	t.Helper()
	for _, cl := range clients {
		polltest.Check(t, 10*time.Second, "the function to reach every node", func() error {
			_, err := cl.GetFunction(ctxT(t, 10*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String(name)})
			return err
		})
	}
}

// percentiles returns p50 and p99 of ds.
func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)]
}
