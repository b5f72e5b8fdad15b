package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/flintdev/flint/internal/certtest"
	"github.com/flintdev/flint/internal/polltest"
)

// TestClusterWorkerTLS: with --worker-tls-* on every node, a frontend's
// invocations reach the sandboxes on another node's worker over TLS, and
// the worker port no longer speaks plain HTTP.
func TestClusterWorkerTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := certtest.Write(t, dir, "ca", nil, nil)
	certtest.Write(t, dir, "node", ca, caKey)
	tlsArgs := []string{"--worker-tls-cert", filepath.Join(dir, "node.pem"), "--worker-tls-key", filepath.Join(dir, "node-key.pem"),
		"--worker-tls-ca", filepath.Join(dir, "ca.pem")}
	nc, servers := startCluster(t, []string{"flint-tw"}, tlsArgs...)
	worker := servers[0]
	front := startClusterNode(t, append([]string{"--nats-url", nc.URLs(), "--host-id", "flint-tf", "--roles", "frontend", "--sandbox-init", initBin}, tlsArgs...)...)
	polltest.Check(t, 20*time.Second, "the frontend to see the worker", func() error {
		if n := len(front.cluster(t).Hosts); n != 2 {
			return fmt.Errorf("frontend sees %d hosts", n)
		}
		return nil
	})
	createGoFn(t, front.lambda(), "tls", func(in *lambda.CreateFunctionInput) { in.MemorySize = aws.Int32(128) })
	for i := range 3 {
		if r := asReply(t, invoke(t, front.lambda(), "tls", map[string]any{"name": fmt.Sprint("t", i)}, false)); r.Hello != fmt.Sprint("t", i) {
			t.Fatalf("reply %+v", r)
		}
	}
	if !strings.Contains(worker.log(), "tls=true") {
		t.Error("the worker did not log serving TLS")
	}
	for _, h := range front.clusterProvisioned(t) {
		if h.ID != "flint-tw" {
			continue
		}
		resp, err := http.Post("http://"+h.Addr+"/flint/host/v1/sandboxes", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("plain HTTP to a TLS worker port: %d, want 400 (an HTTP request to an HTTPS server)", resp.StatusCode)
			}
		}
	}
}
