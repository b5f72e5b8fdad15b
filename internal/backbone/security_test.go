package backbone

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flintdev/flint/internal/certtest"
)

// startExternal starts a JetStream server with opts' extras for a security
// test.
func startExternal(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// TestPasswordInURL: user:password@ in --nats-url logs in, and the URL
// Flint reports carries no password.
func TestPasswordInURL(t *testing.T) {
	srv := startExternal(t, &server.Options{Username: "flint", Password: "s3cret"})
	addr := srv.Addr().String()
	if _, err := Start(Config{URL: "nats://flint:wrong@" + addr}); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("a wrong password: %v (the error must not repeat it)", err)
	}
	b, err := Start(Config{URL: "nats://flint:s3cret@" + addr})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if u := b.ClientURL(); strings.Contains(u, "s3cret") {
		t.Errorf("ClientURL %q shows the password", u)
	}
}

// TestTLS: with --nats-tls-ca (and a client certificate when the server
// verifies clients) Flint connects over TLS; without the CA it does not.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := certtest.Write(t, dir, "ca", nil, nil)
	certtest.Write(t, dir, "server", ca, caKey)
	certtest.Write(t, dir, "client", ca, caKey)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"),
		CaFile: filepath.Join(dir, "ca.pem"), Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := startExternal(t, &server.Options{TLSConfig: tc, TLS: true, TLSVerify: true, TLSTimeout: 2})
	url := "tls://" + srv.Addr().String()
	if _, err := Start(Config{URL: url}); err == nil {
		t.Fatal("connected without the CA")
	}
	b, err := Start(Config{URL: url, TLS: TLSConfig{CA: filepath.Join(dir, "ca.pem"),
		Cert: filepath.Join(dir, "client.pem"), Key: filepath.Join(dir, "client-key.pem")}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st, err := b.Conn().TLSConnectionState(); err != nil || !st.HandshakeComplete {
		t.Fatalf("not a TLS connection: %v", err)
	}
}
