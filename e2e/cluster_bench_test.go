package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/flintdev/flint/internal/polltest"
)

// BenchmarkClusterInvoke compares an invocation whose sandbox is in the
// frontend's own process (local) with one whose sandbox is on another
// node, reached through hostproxy (remote), side by side in one run: two
// `flint server`s on a 3-node NATS cluster, "flint-w" with every role and
// "flint-f" a frontend only, so every sandbox lives on flint-w. Each
// sub-benchmark reports p50 and p99 latency as seen by the Lambda client.
//
//	go test -run '^$' -bench ClusterInvoke -benchtime 300x ./e2e     (warm)
//	go test -run '^$' -bench 'ClusterInvoke/cold' -benchtime 20x ./e2e
func BenchmarkClusterInvoke(b *testing.B) {
	nc, servers := startCluster(b, []string{"flint-w"})
	front := startServer(b, b.TempDir(), "--nats-url", nc.URLs(), "--host-id", "flint-f",
		"--roles", "frontend", "--sandbox-init", initBin)
	polltest.Check(b, 20*time.Second, "the frontend to see the worker", func() error {
		if n := len(front.cluster(b).Hosts); n != 2 {
			return fmt.Errorf("frontend sees %d hosts", n)
		}
		return nil
	})
	local, remote := servers[0].lambda(), front.lambda()
	createGoFn(b, local, "bench", nil)
	waitVisible(b, "bench", remote)

	measure := func(b *testing.B, cl *lambda.Client, name string) time.Duration {
		t0 := time.Now()
		out, err := cl.Invoke(ctxT(b, 60*time.Second), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{"name":"b"}`)})
		d := time.Since(t0)
		if err != nil || out.FunctionError != nil {
			b.Fatalf("invoke %s: %v", name, err)
		}
		return d
	}
	report := func(b *testing.B, ds []time.Duration) {
		p50, p99 := percentiles(ds)
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	}
	for _, tc := range []struct {
		name string
		cl   *lambda.Client
	}{{"local", local}, {"remote", remote}} {
		b.Run("warm/"+tc.name, func(b *testing.B) {
			measure(b, tc.cl, "bench") // the frontend's own warm sandbox
			ds := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				ds = append(ds, measure(b, tc.cl, "bench"))
			}
			report(b, ds)
		})
	}
	seq := 0
	for _, tc := range []struct {
		name string
		cl   *lambda.Client
	}{{"local", local}, {"remote", remote}} {
		b.Run("cold/"+tc.name, func(b *testing.B) {
			ds := make([]time.Duration, 0, b.N)
			for range b.N {
				b.StopTimer()
				seq++
				name := fmt.Sprintf("cold-%s-%d", tc.name, seq)
				createGoFn(b, local, name, nil)
				waitVisible(b, name, tc.cl)
				b.StartTimer()
				ds = append(ds, measure(b, tc.cl, name))
			}
			report(b, ds)
		})
	}
}
