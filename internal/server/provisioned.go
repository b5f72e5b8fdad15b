package server

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/placement"
	"github.com/flintdev/flint/internal/workermanager"
)

// Provisioned concurrency in a cluster (docs/cluster.md).
//
// A config (N sandboxes of a version or alias) lives in the metadata
// store; every frontend node watches the configs and keeps its share of
// each: the live frontend nodes (from the heartbeats), sorted by host id,
// split N as evenly as they can (shareOf), so together they keep exactly N
// once their views of the membership agree (within a heartbeat or two). A
// node's Worker Manager makes its share with its own provisioner, placing
// the sandboxes on any worker of the cluster; invocations the node admits
// use them as warm starts. Each node reports its share and progress in its
// heartbeat (placement.HostStatus.Provisioned), and any frontend answers
// GetProvisionedConcurrencyConfig with the cluster's sum.
//
// When a frontend node dies, it leaves placement within a few seconds; the
// others' shares grow at their next reconcile (every heartbeat interval)
// and they make the missing sandboxes, while the workers destroy the dead
// node's (they belong to the node that made them). A node that joins takes
// its share, and the others hand their extra sandboxes back to the
// ordinary keep-alive.

// clusterProvisioning is the frontend's ConcurrencyController in a
// cluster: reserved concurrency goes to the manager as before, provisioned
// concurrency through the store and the split above.
type clusterProvisioning struct {
	self      string
	functions *metadata.Store
	manager   *workermanager.Manager
	placement *placement.Service
	log       *slog.Logger

	kick chan struct{} // a reconcile is wanted now (buffered, 1)
	stop func()        // ends the loop and the watch; set by start

	mu sync.Mutex // guards configs, applied, requested
	// configs are the stored configs, by configKey.
	configs map[string]*metadata.ProvisionedConfig
	// applied is what this node's manager was told, by configKey; only
	// the reconcile goroutine changes it.
	applied map[string]appliedShare
	// requested is each provisioned version's N (the whole cluster's),
	// by sandbox key.
	requested map[string]int
}

// appliedShare is this node's share of one config.
type appliedShare struct {
	fn *metadata.Function // the version provisioned
	n  int                // 0: none
}

var _ interface {
	SetReservedConcurrency(account, name string, n int)
	ClearReservedConcurrency(account, name string)
	SetProvisionedConcurrency(fn *metadata.Function, n int) error
	ClearProvisionedConcurrency(fn *metadata.Function)
	ProvisionedConcurrency(fn *metadata.Function) (concurrency.ProvisionedStatus, bool)
	AccountConcurrency() int
} = (*clusterProvisioning)(nil)

func configKey(account, name, qualifier string) string { return account + "/" + name + "/" + qualifier }

// startProvisioning watches the configs and reconciles this node's shares
// every interval, until the returned provisioning's stop.
func startProvisioning(self string, functions *metadata.Store, m *workermanager.Manager, p *placement.Service, log *slog.Logger, interval time.Duration) (*clusterProvisioning, error) {
	cp := &clusterProvisioning{
		self: self, functions: functions, manager: m, placement: p, log: log,
		kick:    make(chan struct{}, 1),
		configs: map[string]*metadata.ProvisionedConfig{}, applied: map[string]appliedShare{}, requested: map[string]int{},
	}
	stopWatch, err := functions.WatchProvisionedConfigs(func(c *metadata.ProvisionedConfig, set bool) {
		k := configKey(c.Account, c.FunctionName, c.Qualifier)
		cp.mu.Lock()
		if set {
			cp.configs[k] = c
		} else {
			delete(cp.configs, k)
		}
		cp.mu.Unlock()
		cp.reconcileSoon()
	})
	if err != nil {
		return nil, err
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			case <-cp.kick:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			cp.reconcile(ctx)
			cancel()
		}
	}()
	var once sync.Once
	cp.stop = func() {
		once.Do(func() {
			stopWatch()
			close(done)
			<-exited
		})
	}
	return cp, nil
}

func (cp *clusterProvisioning) reconcileSoon() {
	select {
	case cp.kick <- struct{}{}:
	default:
	}
}

// frontends are the ids of the live frontend nodes, sorted.
func frontends(hosts []placement.HostInfo) []string {
	var ids []string
	for _, h := range hosts {
		if !h.Draining && slices.Contains(h.Roles, placement.RoleFrontend) {
			ids = append(ids, h.HostID)
		}
	}
	slices.Sort(ids)
	return ids
}

// shareOf is node self's share of n sandboxes of the config key among
// nodes (sorted): n split as evenly as it goes, the remainder to the nodes
// after a position that depends on key, so that many small configs do not
// all land on the first node. The shares of all nodes add up to n; a node
// not listed has none.
func shareOf(n int, nodes []string, self, key string) int {
	idx := slices.Index(nodes, self)
	if idx < 0 || n <= 0 {
		return 0
	}
	k := len(nodes)
	h := fnv.New32a()
	h.Write([]byte(key))
	pos := (idx + int(h.Sum32()%uint32(k))) % k
	share := n / k
	if pos < n%k {
		share++
	}
	return share
}

// reconcile brings this node's manager to its share of every config.
func (cp *clusterProvisioning) reconcile(ctx context.Context) {
	nodes := frontends(cp.placement.Hosts())
	cp.mu.Lock()
	configs := maps.Clone(cp.configs)
	applied := maps.Clone(cp.applied)
	cp.mu.Unlock()

	want := map[string]appliedShare{}
	requested := map[string]int{}
	for k, c := range configs {
		fn, err := cp.target(ctx, c)
		if err != nil {
			cp.log.Debug("provisioned concurrency target unreadable", "config", k, "err", err)
			if old, ok := applied[k]; ok {
				want[k] = old // keep what runs until the store answers
			}
			continue
		}
		requested[fn.SandboxKey()] = c.Requested
		want[k] = appliedShare{fn: fn, n: shareOf(c.Requested, nodes, cp.self, k)}
	}
	for k, old := range applied {
		w, ok := want[k]
		if !ok || w.n == 0 || w.fn.SandboxKey() != old.fn.SandboxKey() {
			cp.manager.ClearProvisionedConcurrency(old.fn)
			delete(applied, k)
			cp.log.Info("provisioned concurrency share dropped", "config", k, "version", old.fn.Version)
		}
	}
	for k, w := range want {
		if w.n == 0 {
			continue
		}
		if old, ok := applied[k]; ok && old.n == w.n {
			continue
		}
		if err := cp.manager.SetProvisionedConcurrency(w.fn, w.n); err != nil {
			cp.log.Warn("provisioned concurrency share", "config", k, "err", err)
			continue
		}
		applied[k] = w
		cp.log.Info("provisioned concurrency share", "config", k, "version", w.fn.Version, "share", w.n, "frontends", len(nodes))
	}
	cp.mu.Lock()
	cp.applied, cp.requested = applied, requested
	cp.mu.Unlock()
}

// target is the version a config's qualifier (a version, or an alias's
// primary version) stands for.
func (cp *clusterProvisioning) target(ctx context.Context, c *metadata.ProvisionedConfig) (*metadata.Function, error) {
	v := c.Qualifier
	if !metadata.IsVersionNumber(v) {
		a, err := cp.functions.GetAlias(ctx, c.Account, c.FunctionName, c.Qualifier)
		if err != nil {
			return nil, err
		}
		v = a.FunctionVersion
	}
	fn, err := cp.functions.Get(ctx, c.Account, c.FunctionName, v)
	if err != nil {
		return nil, fmt.Errorf("provisioned concurrency of %s:%s: %w", c.FunctionName, c.Qualifier, err)
	}
	return fn, nil
}

// report is this node's part for its heartbeat, by sandbox key.
func (cp *clusterProvisioning) report() map[string]placement.ProvisionedShare {
	cp.mu.Lock()
	applied := maps.Clone(cp.applied)
	cp.mu.Unlock()
	if len(applied) == 0 {
		return nil
	}
	out := make(map[string]placement.ProvisionedShare, len(applied))
	for _, a := range applied {
		st, ok := cp.manager.ProvisionedConcurrency(a.fn)
		if !ok {
			continue
		}
		sh := placement.ProvisionedShare{Requested: a.n, Allocated: st.Allocated, Available: st.Available}
		if st.Status == concurrency.StatusFailed {
			sh.Failed = st.StatusReason
		}
		out[a.fn.SandboxKey()] = sh
	}
	return out
}

// ProvisionedConcurrency is the cluster's progress on fn's version: the
// sum of every frontend node's share (this node's live, the others' from
// their last heartbeat). ok is false until this node has seen the config.
func (cp *clusterProvisioning) ProvisionedConcurrency(fn *metadata.Function) (concurrency.ProvisionedStatus, bool) {
	key := fn.SandboxKey()
	cp.mu.Lock()
	n, ok := cp.requested[key]
	cp.mu.Unlock()
	if !ok {
		return concurrency.ProvisionedStatus{}, false
	}
	st := concurrency.ProvisionedStatus{Requested: n}
	failed := ""
	add := func(host string, sh placement.ProvisionedShare) {
		st.Allocated += sh.Allocated
		st.Available += sh.Available
		if sh.Failed != "" && failed == "" {
			failed = "on " + host + ": " + sh.Failed
		}
	}
	if sh, ok := cp.report()[key]; ok {
		add(cp.self, sh)
	}
	for _, h := range cp.placement.Hosts() {
		if h.HostID == cp.self {
			continue
		}
		if sh, ok := h.Provisioned[key]; ok {
			add(h.HostID, sh)
		}
	}
	// While the membership changes, a joining node may have made its
	// share before a leaving one dropped its own: never report more than
	// was requested.
	st.Allocated, st.Available = min(st.Allocated, n), min(st.Available, n)
	switch {
	case failed != "":
		st.Status, st.StatusReason = concurrency.StatusFailed, failed
	case st.Allocated >= n:
		st.Status = concurrency.StatusReady
	default:
		st.Status = concurrency.StatusInProgress
	}
	return st, true
}

// SetProvisionedConcurrency and ClearProvisionedConcurrency are called by
// the frontend after it changed the store: the watch brings the change to
// every node; this node reconciles at once.
func (cp *clusterProvisioning) SetProvisionedConcurrency(*metadata.Function, int) error {
	cp.reconcileSoon()
	return nil
}

func (cp *clusterProvisioning) ClearProvisionedConcurrency(*metadata.Function) { cp.reconcileSoon() }

func (cp *clusterProvisioning) SetReservedConcurrency(account, name string, n int) {
	cp.manager.SetReservedConcurrency(account, name, n)
}

func (cp *clusterProvisioning) ClearReservedConcurrency(account, name string) {
	cp.manager.ClearReservedConcurrency(account, name)
}

func (cp *clusterProvisioning) AccountConcurrency() int { return cp.manager.AccountConcurrency() }
