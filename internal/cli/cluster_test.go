package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/server"
)

func TestPrintCluster(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 10, 0, time.UTC)
	v := server.ClusterView{
		Hosts: []server.ClusterHost{
			{ID: "n1", Roles: []string{"frontend", "poller", "worker"}, MemoryMB: 4096, ReservedMB: 1024, Sandboxes: 8,
				LastHeartbeat: now.Add(-700 * time.Millisecond), Addr: "10.0.0.1:9100", Driver: "microvm"},
			{ID: "api", Roles: []string{"frontend"}, LastHeartbeat: now.Add(-2 * time.Second), Draining: true, Provisioned: 3},
		},
		Backbone: server.BackboneView{Connected: true, ConnectedServer: "nats-1", ConnectedURL: "nats://10.0.0.1:4222",
			Cluster: "flint", RTT: "200µs", Servers: []string{"a", "b", "c"}, Streams: 9},
	}
	var buf bytes.Buffer
	if err := printCluster(&buf, v, now); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"HOST", "DRIVER", "PROVISIONED", "n1", "frontend,poller,worker", "microvm", "4096", "1024", "700ms ago", "10.0.0.1:9100",
		"api", "frontend (draining)", "  3  ", "2s ago",
		"backbone: external NATS, connected to nats-1 (nats://10.0.0.1:4222, cluster flint, rtt 200µs), 3 servers known, 9 streams",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
