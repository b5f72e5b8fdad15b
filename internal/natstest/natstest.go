// Package natstest starts a real NATS JetStream cluster inside a test
// process: N nats-server nodes on loopback, each with its own t.TempDir()
// store and fixed random ports, joined by cluster routes. Tests of anything
// that must survive the loss of a backbone node (replication, Flint
// clusters) run against it instead of a mock.
//
// API (stable; other branches build on it):
//
//	c := natstest.Start(t, natstest.Config{Nodes: 3})
//	c.URLs()          // "nats://127.0.0.1:p0,nats://127.0.0.1:p1,…" for nats.Connect or --nats-url
//	c.ClientURL(i)    // one node's client URL
//	c.MonitorURL(i)   // one node's HTTP monitoring base URL ("http://127.0.0.1:p")
//	c.Server(i)       // the *server.Server while node i runs (nil after Kill)
//	c.Kill(i)         // stop node i at once, without lame-duck mode
//	c.Restart(i)      // start node i again: same store dir, same ports, same name
//	c.WaitReady(t)    // wait until JetStream has a meta leader that every running node follows
//	c.Len()           // number of nodes
//
// Start waits for WaitReady itself; call it again after Kill or Restart.
// Every node is shut down by t.Cleanup. Methods are safe for concurrent use.
//
// Kill is as abrupt as an in-process server allows: nats-server's Shutdown
// closes client and route connections without lame-duck mode or leader
// hand-off, and nothing written after it reaches the node. It cannot lose
// unsynced page-cache writes the way a power cut can.
package natstest

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config shapes the cluster.
type Config struct {
	// Nodes is the number of servers; 0 means 3.
	Nodes int
	// Name is the cluster name; empty means "flint-test".
	Name string
	// Configure, when set, adjusts node i's options before each start
	// (including restarts): e.g. SyncAlways, MaxPayload, accounts. Ports,
	// routes, the store dir and the server name are set already; leave them.
	Configure func(i int, o *server.Options)
}

// Cluster is a running N-node JetStream cluster.
type Cluster struct {
	cfg   Config
	t     testing.TB
	mu    sync.Mutex // guards nodes[i].srv
	nodes []*node
}

type node struct {
	name                  string
	dir                   string
	client, cluster, http int
	srv                   *server.Server
}

// Start starts the cluster and waits until JetStream has a meta leader.
func Start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Name == "" {
		cfg.Name = "flint-test"
	}
	c := &Cluster{cfg: cfg, t: t}
	for i := 0; i < cfg.Nodes; i++ {
		c.nodes = append(c.nodes, &node{
			name:    fmt.Sprintf("n%d", i),
			dir:     t.TempDir(),
			client:  freePort(t),
			cluster: freePort(t),
			http:    freePort(t),
		})
	}
	t.Cleanup(c.shutdownAll)
	// Start every node before waiting for any: a JetStream cluster needs a
	// quorum of its routes to come up.
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.start(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c.WaitReady(t)
	return c
}

// Len is the number of nodes, running or not.
func (c *Cluster) Len() int { return len(c.nodes) }

// URLs is every node's client URL, comma-separated, in node order.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i := range c.nodes {
		urls[i] = c.ClientURL(i)
	}
	return strings.Join(urls, ",")
}

// ClientURL is node i's client URL (whether or not it runs).
func (c *Cluster) ClientURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].client)
}

// MonitorURL is node i's HTTP monitoring base URL, e.g. MonitorURL(0)+"/jsz".
func (c *Cluster) MonitorURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.nodes[i].http)
}

// Server is node i's server, or nil while it is killed.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// Kill stops node i at once. Killing a stopped node does nothing.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	srv := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart starts node i again on its store dir and ports (killing it first
// if it runs). It returns once the node accepts clients; call WaitReady to
// wait for JetStream.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Kill(i)
	// The kernel may hold the just-closed ports briefly; retry a little.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.start(i)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest: restart node %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitReady waits (up to 30 s) until every running node names the same
// JetStream meta leader, is current with it, and the leader counts every
// running node as a current peer.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c.ready() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: no JetStream meta leader that every running node follows after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) ready() bool {
	c.mu.Lock()
	var running []*server.Server
	for _, n := range c.nodes {
		if n.srv != nil {
			running = append(running, n.srv)
		}
	}
	c.mu.Unlock()
	leader := ""
	for _, srv := range running {
		if !srv.JetStreamIsCurrent() {
			return false
		}
		jsz, err := srv.Jsz(nil)
		if err != nil || jsz.Meta == nil || jsz.Meta.Leader == "" {
			return false
		}
		if leader != "" && jsz.Meta.Leader != leader {
			return false
		}
		leader = jsz.Meta.Leader
		if !srv.JetStreamIsLeader() {
			continue
		}
		// The leader sees every other running node as a current peer.
		current := 1
		for _, p := range jsz.Meta.Replicas {
			if p.Current && !p.Offline {
				current++
			}
		}
		if current < len(running) {
			return false
		}
	}
	return leader != ""
}

func (c *Cluster) options(i int) *server.Options {
	n := c.nodes[i]
	var routes []string
	for j, m := range c.nodes {
		if j != i {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", m.cluster))
		}
	}
	o := &server.Options{
		ServerName: n.name,
		Host:       "127.0.0.1",
		Port:       n.client,
		HTTPHost:   "127.0.0.1",
		HTTPPort:   n.http,
		JetStream:  true,
		StoreDir:   filepath.Join(n.dir, "jetstream"),
		Cluster: server.ClusterOpts{
			Name: c.cfg.Name,
			Host: "127.0.0.1",
			Port: n.cluster,
		},
		Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		NoSigs: true,
		NoLog:  true,
	}
	if c.cfg.Configure != nil {
		c.cfg.Configure(i, o)
	}
	return o
}

func (c *Cluster) start(i int) error {
	srv, err := server.NewServer(c.options(i))
	if err != nil {
		return fmt.Errorf("natstest: node %d: %w", i, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("natstest: node %d not ready for connections", i)
	}
	c.mu.Lock()
	c.nodes[i].srv = srv
	c.mu.Unlock()
	return nil
}

func (c *Cluster) shutdownAll() {
	for i := range c.nodes {
		c.Kill(i)
	}
}

// freePort reserves a loopback port by listening on :0 and closing it. Another
// process could take it before the node binds it; on loopback in a test run
// that is rare enough.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
