package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/flintdev/flint/internal/polltest"
)

// invokeLoop invokes fn:qualifier through cl until stop, recording every
// call's start, end and error.
type invokeLoop struct {
	mu      sync.Mutex
	results []loopResult
}

type loopResult struct {
	via        string
	start, end time.Time
	err        error
}

func (l *invokeLoop) run(t *testing.T, wg *sync.WaitGroup, stop <-chan struct{}, via string, cl *lambda.Client, fn, qualifier string) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			payload, _ := json.Marshal(map[string]any{"action": "sleep", "ms": 50})
			r := loopResult{via: via, start: time.Now()}
			out, err := cl.Invoke(ctxT(t, 30*time.Second), &lambda.InvokeInput{FunctionName: aws.String(fn), Qualifier: aws.String(qualifier), Payload: payload})
			if err == nil && out.FunctionError != nil {
				err = fmt.Errorf("function error: %s", out.Payload)
			}
			r.end, r.err = time.Now(), err
			l.mu.Lock()
			l.results = append(l.results, r)
			l.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
}

// provisionedState reads a config's state through cl.
func provisionedState(t *testing.T, cl *lambda.Client, fn, q string) (*lambda.GetProvisionedConcurrencyConfigOutput, error) {
	return cl.GetProvisionedConcurrencyConfig(ctxT(t, 10*time.Second), &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String(fn), Qualifier: aws.String(q)})
}

// waitProvisioned waits until the config reads READY with n allocated
// through cl, and every node's provisioned sandboxes (as the cluster view
// of s lists them) add up to n, held by the nodes named in holders (any
// when empty). It returns how long that took.
func waitProvisioned(t *testing.T, s *flintServer, fn, q string, n int, d time.Duration, holders ...string) time.Duration {
	t.Helper()
	start := time.Now()
	polltest.Check(t, d, fmt.Sprintf("%d provisioned sandboxes READY across the cluster", n), func() error {
		out, err := provisionedState(t, s.lambda(), fn, q)
		if err != nil {
			return err
		}
		if out.Status != types.ProvisionedConcurrencyStatusEnumReady || aws.ToInt32(out.AllocatedProvisionedConcurrentExecutions) != int32(n) {
			return fmt.Errorf("status %s, allocated %d, available %d, reason %q", out.Status,
				aws.ToInt32(out.AllocatedProvisionedConcurrentExecutions), aws.ToInt32(out.AvailableProvisionedConcurrentExecutions), aws.ToString(out.StatusReason))
		}
		total := 0
		by := map[string]int{}
		for _, h := range s.clusterProvisioned(t) {
			total += h.Provisioned
			by[h.ID] = h.Provisioned
		}
		if total != n {
			return fmt.Errorf("the nodes keep %d provisioned sandboxes, want %d: %v", total, n, by)
		}
		for id, k := range by {
			if k > 0 && len(holders) > 0 && !contains(holders, id) {
				return fmt.Errorf("%s still keeps %d: %v", id, k, by)
			}
		}
		return nil
	})
	return time.Since(start)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type provisionedHost struct {
	ID          string `json:"id"`
	Addr        string `json:"addr"`
	Provisioned int    `json:"provisioned"`
}

func (s *flintServer) clusterProvisioned(t testing.TB) []provisionedHost {
	t.Helper()
	var v struct {
		Hosts []provisionedHost `json:"hosts"`
	}
	if code, err := httpGetJSON(s.url()+"/flint/v1/cluster", &v); err != nil || code != http.StatusOK {
		t.Fatalf("GET /flint/v1/cluster: %d %v", code, err)
	}
	return v.Hosts
}

// lists reports whether s's cluster view lists id.
func (s *flintServer) lists(t testing.TB, id string) bool {
	for _, h := range s.clusterProvisioned(t) {
		if h.ID == id {
			return true
		}
	}
	return false
}

// TestClusterNodeLoss: three nodes on one 3-node NATS cluster, a frontend
// (A, --roles frontend,poller) and two full nodes (B, C).
//
//   - Provisioned concurrency 4 set through B is kept by the three
//     frontends together: exactly 4 provisioned sandboxes in the cluster,
//     READY through every node.
//   - kill -9 of A while invocations run through B and C: every one of
//     them succeeds, during and after; B and C take over A's share (4
//     READY again, held by B and C) within seconds of A leaving.
//   - A restarted (same --host-id, same data dir) starts at once, is listed
//     again, serves invocations and takes its share back.
//   - kill -9 of C (worker and frontend) and restart: it rejoins, and
//     placement puts sandboxes on it again.
//   - The worker port refuses a request without the cluster's token.
func TestClusterNodeLoss(t *testing.T) {
	nc, servers := startCluster(t, []string{"flint-b", "flint-c"}, "--host-memory", "4096")
	b, c := servers[0], servers[1]
	aData := t.TempDir()
	aArgs := []string{"--nats-url", nc.URLs(), "--host-id", "flint-a", "--roles", "frontend,poller", "--sandbox-init", initBin}
	a, err := startServerErr(t, aData, aArgs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*flintServer{a, b, c} {
		polltest.Check(t, 20*time.Second, "every node to see the 3 hosts", func() error {
			if n := len(s.clusterProvisioned(t)); n != 3 {
				return fmt.Errorf("%s sees %d hosts", s.url(), n)
			}
			return nil
		})
	}

	// The worker port serves only the cluster's nodes.
	for _, h := range b.clusterProvisioned(t) {
		if h.ID != "flint-c" {
			continue
		}
		resp, err := http.Post("http://"+h.Addr+"/flint/host/v1/sandboxes", "application/json",
			strings.NewReader(`{"account":"000000000000","name":"x","version":"$LATEST","memorySize":128}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("worker port without the token: %d %s, want 401", resp.StatusCode, body)
		}
	}

	createGoFn(t, a.lambda(), "pc", func(in *lambda.CreateFunctionInput) { in.MemorySize = aws.Int32(128); in.Timeout = aws.Int32(30) })
	// Created through A, readable through B and C at once.
	for _, s := range []*flintServer{b, c} {
		if _, err := s.lambda().GetFunction(ctxT(t, 10*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("pc")}); err != nil {
			t.Fatalf("GetFunction through %s right after A's 201: %v", s.url(), err)
		}
	}
	polltest.Check(t, 30*time.Second, "the function to become Active", func() error {
		out, err := a.lambda().GetFunction(ctxT(t, 10*time.Second), &lambda.GetFunctionInput{FunctionName: aws.String("pc")})
		if err != nil {
			return err
		}
		if out.Configuration.State != types.StateActive {
			return fmt.Errorf("state %s", out.Configuration.State)
		}
		return nil
	})
	v, err := a.lambda().PublishVersion(ctxT(t, 30*time.Second), &lambda.PublishVersionInput{FunctionName: aws.String("pc")})
	if err != nil {
		t.Fatal(err)
	}
	q := aws.ToString(v.Version)
	const n = 4
	if _, err := b.lambda().PutProvisionedConcurrencyConfig(ctxT(t, 10*time.Second), &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("pc"), Qualifier: aws.String(q), ProvisionedConcurrentExecutions: aws.Int32(n),
	}); err != nil {
		t.Fatal(err)
	}
	took := waitProvisioned(t, c, "pc", q, n, 60*time.Second)
	t.Logf("provisioned concurrency %d READY across the cluster %v after the Put", n, took.Round(time.Millisecond))
	for _, s := range []*flintServer{a, b} {
		waitProvisioned(t, s, "pc", q, n, 10*time.Second)
	}
	// Before any invocation the provisioned sandboxes are all the workers
	// hold (as their next heartbeats say).
	polltest.Check(t, 10*time.Second, "the workers to hold the provisioned sandboxes only", func() error {
		total := 0
		for _, h := range b.cluster(t).Hosts {
			total += h.Sandboxes
		}
		if total != n {
			return fmt.Errorf("the workers hold %d sandboxes, want the %d provisioned", total, n)
		}
		return nil
	})

	// kill -9 of the frontend A while B and C serve.
	loop := &invokeLoop{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		s := []*flintServer{b, c}[i%2]
		loop.run(t, &wg, stop, []string{"B", "C"}[i%2], s.lambda(), "pc", q)
	}
	time.Sleep(2 * time.Second)
	killed := time.Now()
	a.kill()
	var dropped time.Duration
	polltest.Check(t, 20*time.Second, "B and C to drop A", func() error {
		if b.lists(t, "flint-a") || c.lists(t, "flint-a") {
			return errors.New("A still listed")
		}
		dropped = time.Since(killed)
		return nil
	})
	takeover := waitProvisioned(t, b, "pc", q, n, 30*time.Second, "flint-b", "flint-c")
	t.Logf("kill -9 of frontend A: dropped by B and C %v after, B and C hold the %d provisioned sandboxes %v after that (%v after the kill)",
		dropped.Round(time.Millisecond), n, takeover.Round(time.Millisecond), (dropped + takeover).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	var during, failed int
	var firstAfter time.Duration = -1
	for _, r := range loop.results {
		if r.end.Before(killed) {
			continue
		}
		during++
		if r.err != nil {
			failed++
			t.Errorf("invocation through %s %v after the kill of A: %v", r.via, r.start.Sub(killed).Round(time.Millisecond), r.err)
		} else if r.start.After(killed) && (firstAfter < 0 || r.end.Sub(killed) < firstAfter) {
			firstAfter = r.end.Sub(killed)
		}
	}
	t.Logf("through B and C after the kill of A: %d invocations, %d failed; first success %v after the kill", during, failed, firstAfter.Round(time.Millisecond))
	if during == 0 {
		t.Fatal("no invocation ran after the kill")
	}

	// A restarted under its id, from its data dir: it starts, is listed
	// again, serves and takes its share back.
	restarted := time.Now()
	a, err = startServerErr(t, aData, aArgs...)
	if err != nil {
		t.Fatalf("restart of A under its host id after kill -9: %v", err)
	}
	startTook := time.Since(restarted)
	polltest.Check(t, 15*time.Second, "B and C to list A again", func() error {
		if !b.lists(t, "flint-a") || !c.lists(t, "flint-a") {
			return errors.New("A not listed")
		}
		return nil
	})
	if r := asReply(t, invoke(t, a.lambda(), "pc", map[string]any{"name": "back"}, false)); r.Hello != "back" {
		t.Fatalf("reply through the restarted A: %+v", r)
	}
	aShare := 0
	polltest.Check(t, 30*time.Second, "A to take its share back", func() error {
		for _, h := range b.clusterProvisioned(t) {
			if h.ID == "flint-a" {
				aShare = h.Provisioned
			}
		}
		if aShare == 0 {
			return errors.New("A keeps no provisioned sandbox")
		}
		return nil
	})
	waitProvisioned(t, b, "pc", q, n, 30*time.Second)
	t.Logf("A restarted: started in %v (3 s of it listening for a live node with its id), READY %d with A's share (%d) back %v after the restart",
		startTook.Round(time.Millisecond), n, aShare, time.Since(restarted).Round(time.Millisecond))

	// kill -9 of C, a worker and frontend, restarted at once (as systemd's
	// Restart=always does), before the others have even dropped it: its
	// id is accepted (the old instance no longer heartbeats), the others
	// replace the old instance by the new one, and the provisioned
	// sandboxes lost with C's worker are made again.
	cData := c.data
	c.kill()
	cKilled := time.Now()
	c, err = startServerErr(t, cData, "--nats-url", nc.URLs(), "--host-id", "flint-c", "--sandbox-init", initBin, "--host-memory", "4096")
	if err != nil {
		t.Fatalf("restart of C under its host id right after kill -9: %v", err)
	}
	t.Logf("C restarted %v after its kill -9", time.Since(cKilled).Round(time.Millisecond))
	polltest.Check(t, 15*time.Second, "A, B and C to list C", func() error {
		if !a.lists(t, "flint-c") || !b.lists(t, "flint-c") || !c.lists(t, "flint-c") {
			return errors.New("C not listed")
		}
		return nil
	})
	waitProvisioned(t, a, "pc", q, n, 30*time.Second)
	t.Logf("provisioned %d READY again %v after C's kill", n, time.Since(cKilled).Round(time.Millisecond))
	// Six 1024 MB sandboxes at once do not fit on B (4096 MB, some held
	// by provisioned sandboxes): placement must use C again.
	createGoFn(t, a.lambda(), "big", func(in *lambda.CreateFunctionInput) { in.MemorySize = aws.Int32(1024); in.Timeout = aws.Int32(30) })
	var bwg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		bwg.Add(1)
		go func() {
			defer bwg.Done()
			payload, _ := json.Marshal(map[string]any{"action": "sleep", "ms": 3000})
			out, err := []*flintServer{a, b, c}[i%3].lambda().Invoke(ctxT(t, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String("big"), Payload: payload})
			if err == nil && out.FunctionError != nil {
				err = fmt.Errorf("function error: %s", out.Payload)
			}
			errs <- err
		}()
	}
	onC := 0
	polltest.Check(t, 30*time.Second, "sandboxes on the restarted C", func() error {
		for _, h := range a.cluster(t).Hosts {
			if h.ID == "flint-c" {
				onC = h.Sandboxes
			}
		}
		if onC == 0 {
			return errors.New("none on C")
		}
		return nil
	})
	bwg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("invocation after C rejoined: %v", err)
		}
	}
	waitProvisioned(t, a, "pc", q, n, 30*time.Second)
	t.Logf("C restarted after kill -9: listed again, %d sandboxes placed on it", onC)
}
