package e2e

import (
	"context"
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
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/natstest"
	"github.com/flintdev/flint/internal/polltest"
)

// jszStreams reads every stream's name and replica count from a node's
// monitoring endpoint.
func jszStreams(monitorURL string) (map[string]int, error) {
	resp, err := http.Get(monitorURL + "/jsz?accounts=true&streams=true&config=true")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var jsz struct {
		AccountDetails []struct {
			Streams []struct {
				Name   string `json:"name"`
				Config *struct {
					Replicas int `json:"num_replicas"`
				} `json:"config"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			if s.Config != nil {
				out[s.Name] = s.Config.Replicas
			}
		}
	}
	return out, nil
}

// nodeOf returns the index of the cluster node the flint server's NATS
// connection is on.
func nodeOf(c *natstest.Cluster) int {
	for i := range c.Len() {
		resp, err := http.Get(c.MonitorURL(i) + "/connz")
		if err != nil {
			continue
		}
		var cz struct {
			Conns []struct {
				Name string `json:"name"`
			} `json:"connections"`
		}
		json.NewDecoder(resp.Body).Decode(&cz)
		resp.Body.Close()
		for _, cn := range cz.Conns {
			if cn.Name == "flint-server" {
				return i
			}
		}
	}
	return 0
}

// TestReplicatedBackboneSurvivesNodeLoss runs Flint on a real 3-node NATS
// cluster with --nats-replicas 3: every stream, KV bucket and object store
// has 3 replicas (an R1 stream made before is updated), and stopping the
// NATS node Flint is connected to, abruptly, during a flood of Event
// invocations loses no acknowledged event and accepts resume within
// seconds.
func TestReplicatedBackboneSurvivesNodeLoss(t *testing.T) {
	requireRoot(t)
	cl := natstest.Start(t, natstest.Config{Nodes: 3, Configure: func(i int, o *server.Options) {
		o.SyncAlways = true
		o.MaxPayload = 8 << 20
	}})
	// An asset left with one replica by an earlier run is updated.
	func() {
		nc, err := nats.Connect(cl.URLs())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FLINT_QUEUES", Subjects: []string{"flint.queue.>"}, Replicas: 1}); err != nil {
			t.Fatal(err)
		}
	}()

	s := startServer(t, t.TempDir(), "--nats-url", cl.URLs(), "--nats-replicas", "3", "--async-ack-wait", "5s")
	if !strings.Contains(s.log(), "sync each write") && !strings.Contains(s.log(), "every NATS server syncs") {
		t.Logf("sync check said: %s", grepLines(s.log(), "sync"))
	}
	want := []string{"FLINT_ASYNC", "FLINT_ASYNC_INBOX", "FLINT_QUEUES", "FLINT_LOGS", "KV_flint-functions", "OBJ_flint-code",
		"KV_FLINT_INVOCATIONS", "KV_FLINT_EVENT_INVOKE_CONFIG", "OBJ_FLINT_ASYNC_PAYLOADS", "KV_flint-keys", "KV_flint-layers"}
	polltest.Check(t, 30*time.Second, "every stream, KV bucket and object store to have 3 replicas", func() error {
		got, err := jszStreams(cl.MonitorURL(0))
		if err != nil {
			return err
		}
		for _, name := range want {
			if got[name] != 3 {
				return fmt.Errorf("stream %s has %d replicas on /jsz, want 3 (all: %v)", name, got[name], got)
			}
		}
		for name, n := range got {
			if n != 3 {
				return fmt.Errorf("stream %s has %d replicas", name, n)
			}
		}
		return nil
	})

	c := s.lambda()
	const fn = "r3flood"
	createGoFn(t, c, fn, func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(30) })

	var mu sync.Mutex
	var results []eventResult
	stop := make(chan struct{})
	wg := flood(c, fn, 8, stop, &mu, &results)
	count := func(since time.Time) (ok, refused int) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			if r.sent.Before(since) {
				continue
			}
			if r.err == nil {
				ok++
			} else {
				refused++
			}
		}
		return
	}
	polltest.Check(t, 60*time.Second, "300 events to be accepted", func() error {
		if n, _ := count(time.Time{}); n < 300 {
			return fmt.Errorf("%d events accepted", n)
		}
		return nil
	})
	asReply(t, invoke(t, c, fn, map[string]any{"name": "warm-before"}, false))
	victim := nodeOf(cl)
	killed := time.Now()
	cl.Kill(victim)
	// A synchronous invocation and a status read right after the loss
	// answer (the sandbox is warm; the function is read from the store).
	syncStart := time.Now()
	asReply(t, invoke(t, c, fn, map[string]any{"name": "sync-after-kill"}, false))
	syncTook := time.Since(syncStart)
	statusStart := time.Now()
	polltest.Check(t, 30*time.Second, "an event's status after the node loss", func() error {
		mu.Lock()
		id := ""
		for _, r := range results {
			if r.err == nil {
				id = r.id
				break
			}
		}
		mu.Unlock()
		_, err := s.asyncStatusOf(id)
		return err
	})
	statusTook := time.Since(statusStart)
	// Accepts resume: events sent after the kill are accepted again.
	var resumed time.Time
	polltest.Check(t, 60*time.Second, "an event accepted after the node loss", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			if r.err == nil && r.sent.After(killed) {
				if end := r.sent.Add(r.took); resumed.IsZero() || end.Before(resumed) {
					resumed = end
				}
			}
		}
		if resumed.IsZero() {
			return errors.New("no event accepted since the kill")
		}
		return nil
	})
	// And keep being accepted for a while.
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()

	// The longest gap between two acknowledged events around the kill
	// (the accept gap).
	var acceptTimes []time.Time
	var ids []string
	refusedAfter := 0
	var refusalMsgs = map[string]int{}
	for _, r := range results {
		if r.err == nil {
			ids = append(ids, r.id)
			acceptTimes = append(acceptTimes, r.sent.Add(r.took))
		} else if r.sent.After(killed.Add(-5 * time.Second)) {
			refusedAfter++
			msg := r.err.Error()
			if i := strings.Index(msg, "ServiceException"); i >= 0 {
				msg = msg[i:]
			}
			if len(msg) > 120 {
				msg = msg[:120]
			}
			refusalMsgs[msg]++
			if strings.Contains(r.err.Error(), "nats:") {
				t.Errorf("refusal leaks a raw message: %v", r.err)
			}
		}
	}
	sort.Slice(acceptTimes, func(i, j int) bool { return acceptTimes[i].Before(acceptTimes[j]) })
	var gap time.Duration
	for i := 1; i < len(acceptTimes); i++ {
		// Pairs of consecutive accepts around the kill: the later
		// one after it, the earlier one within 10 s of it.
		if acceptTimes[i].After(killed) && acceptTimes[i-1].Before(killed.Add(10*time.Second)) {
			gap = max(gap, acceptTimes[i].Sub(acceptTimes[i-1]))
		}
	}
	lost := 0
	deadline := time.Now().Add(4 * time.Minute)
	for _, id := range ids {
		for {
			st, err := s.asyncStatusOf(id)
			if err == nil && st.terminal() {
				if st.Status != "succeeded" {
					t.Errorf("event %s ended %s", id, st.Status)
				}
				break
			}
			if time.Now().After(deadline) {
				lost++
				t.Errorf("accepted event %s did not run: %+v %v", id, st, err)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("R3 NODE-LOSS RESULT: killed NATS node %d (Flint's own) after %d accepts; first accept after the kill %v later; "+
		"longest gap between accepts %v; accepted %d in all, refused %d around the kill %v; lost %d; "+
		"a warm sync invoke right after the kill took %v, a status read %v",
		victim, len(ids)-len(acceptTimesAfter(acceptTimes, killed)), resumed.Sub(killed).Round(time.Millisecond), gap.Round(time.Millisecond),
		len(ids), refusedAfter, refusalMsgs, lost, syncTook.Round(time.Millisecond), statusTook.Round(time.Millisecond))
	cl.Restart(victim)
	cl.WaitReady(t)

	// Without a quorum (two of three nodes down) this node is not ready,
	// and an event is refused within seconds, never accepted.
	others := []int{(victim + 1) % 3, (victim + 2) % 3}
	cl.Kill(others[0])
	cl.Kill(others[1])
	lostQuorum := time.Now()
	polltest.Check(t, 30*time.Second, "/readyz to fail without a quorum", func() error {
		if code, body := getStatus(s.url() + "/readyz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz without a quorum: %d %s", code, body)
		}
		return nil
	})
	notReady := time.Since(lostQuorum)
	start := time.Now()
	_, err := tryInvokeEvent(c, fn, []byte(`{"action":"sleep","ms":1,"name":"no-quorum"}`))
	refusedIn := time.Since(start)
	if err == nil {
		t.Errorf("an event was accepted (202) without a quorum")
	} else {
		checkRefusal(t, "event without a quorum", err, "backbone unavailable")
	}
	cl.Restart(others[0])
	cl.Restart(others[1])
	cl.WaitReady(t)
	regained := time.Now()
	polltest.Check(t, 60*time.Second, "/readyz to pass and events to be accepted with the quorum back", func() error {
		if code, body := getStatus(s.url() + "/readyz"); code != 200 {
			return fmt.Errorf("/readyz with the quorum back: %d %s", code, body)
		}
		_, err := tryInvokeEvent(c, fn, []byte(`{"action":"sleep","ms":1,"name":"quorum-back"}`))
		return err
	})
	t.Logf("R3 QUORUM RESULT: /readyz failed %v after 2 of 3 nodes stopped; an event was refused in %v; ready and accepting %v after they came back",
		notReady.Round(time.Millisecond), refusedIn.Round(time.Millisecond), time.Since(regained).Round(time.Millisecond))
}

func acceptTimesAfter(ts []time.Time, t0 time.Time) []time.Time {
	var out []time.Time
	for _, t := range ts {
		if t.After(t0) {
			out = append(out, t)
		}
	}
	return out
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
