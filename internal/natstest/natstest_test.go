package natstest

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterSurvivesNodeLoss stores a message in an R3 stream, kills the
// node the client is connected to, reads the message through the others,
// and brings the node back on its old store and ports.
func TestClusterSurvivesNodeLoss(t *testing.T) {
	c := Start(t, Config{Nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.a", []byte("kept")); err != nil {
		t.Fatal(err)
	}

	// Every node's monitoring endpoint answers and sees the stream's replicas.
	for i := 0; i < c.Len(); i++ {
		var jsz struct {
			Streams int `json:"streams"`
		}
		getJSON(t, c.MonitorURL(i)+"/jsz", &jsz)
		if jsz.Streams != 1 {
			t.Fatalf("node %d /jsz streams = %d, want 1", i, jsz.Streams)
		}
	}

	var connected int = -1
	for i := 0; i < c.Len(); i++ {
		if c.ClientURL(i) == nc.ConnectedUrl() {
			connected = i
		}
	}
	if connected < 0 {
		t.Fatalf("connected to %s, not one of %s", nc.ConnectedUrl(), c.URLs())
	}
	t.Logf("killing node %d", connected)
	c.Kill(connected)
	if c.Server(connected) != nil {
		t.Fatal("Server is not nil after Kill")
	}
	c.WaitReady(t)

	readBack := func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			s, err := js.Stream(cctx, "S")
			if err == nil {
				var m *jetstream.RawStreamMsg
				m, err = s.GetMsg(cctx, 1)
				if err == nil {
					ccancel()
					if string(m.Data) != "kept" {
						t.Fatalf("read %q, want kept", m.Data)
					}
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("read back after node loss: %v", err)
			}
			t.Logf("read back: %v", err)
			ccancel()
			time.Sleep(100 * time.Millisecond)
		}
	}
	readBack()
	t.Logf("read back after kill")

	c.Restart(connected)
	c.WaitReady(t)
	t.Logf("restarted node %d", connected)
	if c.Server(connected) == nil || c.Server(connected).ClientURL() != c.ClientURL(connected) {
		t.Fatalf("node %d did not come back on %s", connected, c.ClientURL(connected))
	}
	readBack()
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
