package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/placement"
	"github.com/flintdev/flint/internal/workermanager"
)

// TestShareOf: however many nodes and sandboxes, the nodes' shares add up
// to the config's N and differ by at most one; a node that is not a live
// frontend has none; the remainders of many configs spread over the nodes.
func TestShareOf(t *testing.T) {
	for k := 1; k <= 5; k++ {
		var nodes []string
		for i := range k {
			nodes = append(nodes, fmt.Sprintf("node-%d", i))
		}
		for n := 1; n <= 12; n++ {
			for _, key := range []string{"a/f/1", "a/g/live", "b/f/7"} {
				total, lo, hi := 0, n, 0
				for _, id := range nodes {
					s := shareOf(n, nodes, id, key)
					total += s
					lo, hi = min(lo, s), max(hi, s)
				}
				if total != n || hi-lo > 1 {
					t.Errorf("%d nodes, N=%d, %s: total %d, shares %d..%d", k, n, key, total, lo, hi)
				}
				if s := shareOf(n, nodes, "stranger", key); s != 0 {
					t.Errorf("a node not listed got %d", s)
				}
			}
		}
	}
	// 30 configs of N=1 on 3 nodes: every node gets some.
	nodes := []string{"a", "b", "c"}
	got := map[string]int{}
	for i := range 30 {
		for _, id := range nodes {
			got[id] += shareOf(1, nodes, id, fmt.Sprintf("acct/fn%d/1", i))
		}
	}
	for _, id := range nodes {
		if got[id] == 0 {
			t.Errorf("node %s got none of 30 single-sandbox configs: %v", id, got)
		}
	}
}

// TestProvisionedSums: GetProvisionedConcurrencyConfig's figures are the
// sums of the frontends' heartbeated shares: READY once they reach N
// (never reported above N while shares move between nodes), FAILED with
// the failing node when one could not make its share, unknown (ok false)
// before this node has seen the config.
func TestProvisionedSums(t *testing.T) {
	p, err := placement.New(placement.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := workermanager.New(workermanager.Config{Placement: p, Hosts: func(string) (workermanager.Host, bool) { return nil, false }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	cp := &clusterProvisioning{self: "a", manager: m, placement: p,
		configs: map[string]*metadata.ProvisionedConfig{}, applied: map[string]appliedShare{}, requested: map[string]int{}}
	fn := &metadata.Function{Account: "000000000000", Name: "f", Version: "1", RevisionID: "r"}
	key := fn.SandboxKey()
	if _, ok := cp.ProvisionedConcurrency(fn); ok {
		t.Fatal("a config this node has not seen was reported")
	}
	cp.requested[key] = 4
	beat := func(id string, sh placement.ProvisionedShare) {
		t.Helper()
		if err := p.Heartbeat(placement.HostStatus{HostID: id, Roles: []string{placement.RoleFrontend}, Instance: "i",
			Provisioned: map[string]placement.ProvisionedShare{key: sh}}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, status string, allocated, available int) {
		t.Helper()
		st, ok := cp.ProvisionedConcurrency(fn)
		if !ok || st.Status != status || st.Allocated != allocated || st.Available != available || st.Requested != 4 {
			t.Fatalf("%s: %+v (ok %v), want %s %d/%d of 4", what, st, ok, status, allocated, available)
		}
	}
	beat("b", placement.ProvisionedShare{Requested: 2, Allocated: 1, Available: 1})
	check("one node on its way", concurrency.StatusInProgress, 1, 1)
	beat("c", placement.ProvisionedShare{Requested: 2, Allocated: 2, Available: 1})
	beat("b", placement.ProvisionedShare{Requested: 2, Allocated: 2, Available: 2})
	check("both shares made", concurrency.StatusReady, 4, 3)
	beat("d", placement.ProvisionedShare{Requested: 1, Allocated: 1, Available: 1})
	check("a joining node's share made before the others dropped theirs", concurrency.StatusReady, 4, 4)
	beat("d", placement.ProvisionedShare{Requested: 1, Failed: "no worker host has 128 MB free"})
	st, _ := cp.ProvisionedConcurrency(fn)
	if st.Status != concurrency.StatusFailed || !strings.Contains(st.StatusReason, "on d: no worker host") {
		t.Fatalf("a node failed: %+v", st)
	}
}
