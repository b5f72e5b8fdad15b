package server

import (
	"fmt"
	"testing"
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
