package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterKeyFile: --cluster-secret-file's content (whitespace trimmed)
// is the key; a file too short to be a key is refused with what to do.
func TestClusterKeyFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	key, err := loadClusterKey(context.Background(), &Config{ClusterSecretFile: good}, nil, 1, nil)
	if err != nil || string(key) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("loadClusterKey = %q, %v", key, err)
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("secret\n"), 0o600)
	if _, err := loadClusterKey(context.Background(), &Config{ClusterSecretFile: short}, nil, 1, nil); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("short key: %v, want a refusal saying at least 16 bytes", err)
	}
	if _, err := loadClusterKey(context.Background(), &Config{ClusterSecretFile: filepath.Join(dir, "missing")}, nil, 1, nil); err == nil || !strings.Contains(err.Error(), "--cluster-secret-file") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestWorkerTLSFlags: the worker TLS flags go together, and files that
// hold no certificate are refused clearly.
func TestWorkerTLSFlags(t *testing.T) {
	c := Config{DataDir: t.TempDir(), WorkerTLSCert: "/x/cert.pem"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("only --worker-tls-cert: %v", err)
	}
	if serve, dial, err := workerTLS(&Config{}); serve != nil || dial != nil || err != nil {
		t.Fatalf("no TLS flags: %v %v %v", serve, dial, err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	if _, _, err := workerTLS(&Config{WorkerTLSCert: bad, WorkerTLSKey: bad, WorkerTLSCA: bad}); err == nil || !strings.Contains(err.Error(), "--worker-tls-cert") {
		t.Fatalf("unreadable certificate: %v", err)
	}
}
