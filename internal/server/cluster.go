package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/hostproxy"
	"github.com/flintdev/flint/internal/placement"
	"github.com/flintdev/flint/internal/secrets"
	"github.com/flintdev/flint/internal/workermanager"
)

// allRoles is the default: one process runs everything.
var allRoles = []string{placement.RoleFrontend, placement.RoleWorker, placement.RolePoller}

// parseRoles validates roles (each may hold a comma-separated list) and
// returns them sorted; none means all.
func parseRoles(in []string) ([]string, error) {
	var out []string
	for _, r := range in {
		for _, p := range strings.Split(r, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			if !slices.Contains(allRoles, p) {
				return nil, fmt.Errorf("server: unknown role %q: want frontend, worker or poller", p)
			}
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		out = slices.Clone(allRoles)
	}
	slices.Sort(out)
	return out, nil
}

func (c *Config) has(role string) bool { return slices.Contains(c.Roles, role) }

// clustered reports whether the server joins other nodes on an external
// backbone (the embedded one serves this process alone).
func (c *Config) clustered() bool { return c.NATSURL != "" }

func newInstance() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return hex.EncodeToString(b[:])
}

// checkHostIDFree listens to the heartbeats for a few intervals and fails
// when another live node already reports hostID.
func checkHostIDFree(nc *nats.Conn, hostID, instance string, wait time.Duration) error {
	found := make(chan placement.HostStatus, 1)
	sub, err := nc.Subscribe(placement.HeartbeatSubject, func(m *nats.Msg) {
		var st placement.HostStatus
		if json.Unmarshal(m.Data, &st) == nil && st.HostID == hostID && st.Instance != instance && !st.Draining {
			select {
			case found <- st:
			default:
			}
		}
	})
	if err != nil {
		return fmt.Errorf("server: listen for heartbeats: %w", err)
	}
	defer sub.Unsubscribe()
	select {
	case st := <-found:
		where := st.Addr
		if where == "" {
			where = "a node without a worker"
		}
		return fmt.Errorf("server: host id %q is already used by a live Flint node (%s, roles %s): give each node its own --host-id",
			hostID, where, strings.Join(st.Roles, ","))
	case <-time.After(wait):
		return nil
	}
}

// hostSet is the worker manager's view of the worker hosts: this process's
// worker in-process, every other live worker host through a
// hostproxy.Client made from its heartbeat. sync drops the clients (and
// the manager's sandboxes) of hosts that stopped heartbeating.
type hostSet struct {
	self      string
	owner     string             // this node's host id and instance, as remote hosts see it
	key       []byte             // the cluster key (worker port token)
	tls       *tls.Config        // nil: the worker ports speak plain HTTP
	local     workermanager.Host // nil without the worker role
	placement *placement.Service
	log       *slog.Logger

	mu      sync.Mutex // guards remotes
	remotes map[string]*remote
}

type remote struct {
	instance, addr string
	client         *hostproxy.Client
}

// lookup is workermanager.Config.Hosts.
func (hs *hostSet) lookup(id string) (workermanager.Host, bool) {
	if id == hs.self && hs.local != nil {
		return hs.local, true
	}
	info, ok := hs.placement.Host(id)
	if !ok || info.Addr == "" {
		return nil, false
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if r := hs.remotes[id]; r != nil {
		if r.instance == info.Instance && r.addr == info.Addr {
			return r.client, true
		}
		r.client.Gone() // the host restarted: its old sandboxes are gone
	}
	c, err := hostproxy.NewClient(hostproxy.ClientConfig{HostID: id, Addr: info.Addr, Owner: hs.owner, Key: hs.key, TLS: hs.tls})
	if err != nil {
		hs.log.Warn("worker host unusable", "host", id, "err", err)
		return nil, false
	}
	hs.remotes[id] = &remote{instance: info.Instance, addr: info.Addr, client: c}
	return c, true
}

// sync forgets the hosts placement no longer lists (or that came back as
// a new instance): in-flight calls to them end with an error, and the
// manager forgets their sandboxes.
func (hs *hostSet) sync(ctx context.Context, m *workermanager.Manager) {
	live := map[string]placement.HostInfo{}
	admitting := 0
	for _, h := range hs.placement.Hosts() {
		live[h.HostID] = h
		if !h.Draining && (slices.Contains(h.Roles, placement.RoleFrontend) || slices.Contains(h.Roles, placement.RolePoller)) {
			admitting++
		}
	}
	// The account's concurrency limit is split among the nodes that
	// admit invocations.
	m.SetClusterNodes(admitting)
	var lost []string
	hs.mu.Lock()
	for id, r := range hs.remotes {
		if h, ok := live[id]; !ok || h.Instance != r.instance {
			r.client.Gone()
			delete(hs.remotes, id)
			lost = append(lost, id)
		}
	}
	hs.mu.Unlock()
	for _, id := range lost {
		hs.log.Warn("worker host lost", "host", id)
		m.ForgetHost(ctx, id)
	}
}

// start runs sync every heartbeat interval until stop.
func (hs *hostSet) start(m *workermanager.Manager) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(placement.DefaultHeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				hs.sync(ctx, m)
				cancel()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-exited }) }
}

// ownerAlive tells the hostproxy server whether the node that created a
// sandbox (owner "<host id>/<instance>") still runs.
func ownerAlive(p *placement.Service) func(owner string) bool {
	return func(owner string) bool {
		id, instance, _ := strings.Cut(owner, "/")
		h, ok := p.Host(id)
		return ok && h.Instance == instance
	}
}

// advertise is the address other nodes reach the worker at.
func advertise(cfg *Config, bound net.Addr) string {
	if cfg.WorkerAdvertise != "" {
		return cfg.WorkerAdvertise
	}
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return bound.String()
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = cfg.HostID
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// workerListenAddr is the default worker listener: the API's host, any
// free port.
func workerListenAddr(cfg *Config) string {
	if cfg.WorkerListen != "" {
		return cfg.WorkerListen
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, "0")
}

// workerPortKey names the cluster key in the secrets bucket.
const workerPortKey = "worker-port-key"

// loadClusterKey is the key of the worker ports: --cluster-secret-file's
// content, or the one the backbone keeps for the cluster (made by the
// first node that needs it).
func loadClusterKey(ctx context.Context, cfg *Config, js jetstream.JetStream, replicas int, log *slog.Logger) ([]byte, error) {
	if cfg.ClusterSecretFile == "" {
		key, err := secrets.Load(ctx, js, replicas, workerPortKey, log)
		if err != nil {
			return nil, fmt.Errorf("server: cluster key: %w", err)
		}
		return key, nil
	}
	key, err := os.ReadFile(cfg.ClusterSecretFile)
	if err != nil {
		return nil, fmt.Errorf("server: --cluster-secret-file: %w", err)
	}
	key = bytes.TrimSpace(key)
	if len(key) < hostproxy.MinKeySize {
		return nil, fmt.Errorf("server: --cluster-secret-file %s holds %d bytes; the cluster key needs at least %d (e.g. openssl rand -hex 32 > %s)",
			cfg.ClusterSecretFile, len(key), hostproxy.MinKeySize, cfg.ClusterSecretFile)
	}
	return key, nil
}

// countSet counts the non-empty strings.
func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

// workerTLS loads the worker port's TLS settings: what this node's worker
// serves, and what its clients check the other workers with. Both nil
// without --worker-tls-*.
func workerTLS(cfg *Config) (serve, dial *tls.Config, err error) {
	if cfg.WorkerTLSCert == "" {
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.WorkerTLSCert, cfg.WorkerTLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("server: --worker-tls-cert/--worker-tls-key: %w", err)
	}
	pem, err := os.ReadFile(cfg.WorkerTLSCA)
	if err != nil {
		return nil, nil, fmt.Errorf("server: --worker-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("server: --worker-tls-ca %s holds no PEM certificate", cfg.WorkerTLSCA)
	}
	serve = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	dial = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return serve, dial, nil
}
