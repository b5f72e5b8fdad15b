package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/flintdev/flint/internal/polltest"
)

// writeCert writes dir/name.pem and dir/name-key.pem: a certificate for
// 127.0.0.1 signed by parent (a self-signed CA when parent is nil).
func writeCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	signer, signKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	} else {
		signer, signKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// TestClusterWorkerTLS: with --worker-tls-* on every node, a frontend's
// invocations reach the sandboxes on another node's worker over TLS, and
// the worker port no longer speaks plain HTTP.
func TestClusterWorkerTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil)
	writeCert(t, dir, "node", ca, caKey)
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
