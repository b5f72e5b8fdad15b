package placement

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/polltest"
)

func TestHeartbeatsOverNATS(t *testing.T) {
	bb, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	nc := bb.Conn()

	s := newService(t, nil)
	stopSub, err := s.Subscribe(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer stopSub()

	status := HostStatus{HostID: "worker-1", MemoryMB: 2048, MaxSandboxes: 8, CachedCode: []string{"abcd"}}
	stop := StartHeartbeats(nc, 20*time.Millisecond, func() HostStatus { return status })
	polltest.Until(t, 10*time.Second, "worker-1 to register", func() bool { return len(s.Hosts()) == 1 })
	h := s.Hosts()[0]
	if h.HostID != "worker-1" || h.MemoryMB != 2048 || h.MaxSandboxes != 8 || len(h.CachedCode) != 1 || h.Draining {
		t.Fatalf("registered host %+v", h)
	}
	r, err := s.Place(context.Background(), Request{MemoryMB: 512, CodeDigest: "abcd"})
	if err != nil || r.HostID != "worker-1" {
		t.Fatalf("place over NATS-registered host: %+v, %v", r, err)
	}

	// Heartbeats keep coming: the last-seen time moves.
	first := s.Hosts()[0].LastSeen
	polltest.Until(t, 10*time.Second, "a later heartbeat", func() bool { return s.Hosts()[0].LastSeen.After(first) })

	// Malformed messages are dropped without harm.
	for _, bad := range []string{"{", `{"hostId":""}`, `{"hostId":"x","memoryMB":-5}`, `[]`} {
		if err := nc.Publish(HeartbeatSubject, []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}

	stop()
	stop() // idempotent
	polltest.Until(t, 10*time.Second, "the final draining heartbeat", func() bool {
		hs := s.Hosts()
		return len(hs) == 1 && hs[0].Draining
	})
	if hs := s.Hosts(); len(hs) != 1 || hs[0].ReservedMB != 512 {
		t.Fatalf("after stop: %+v", hs)
	}

	// After stopSub no heartbeat reaches the service.
	stopSub()
	data, _ := json.Marshal(HostStatus{HostID: "worker-2", MemoryMB: 1})
	if err := nc.Publish(HeartbeatSubject, data); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Hosts() {
		if h.HostID == "worker-2" {
			t.Fatal("heartbeat applied after unsubscribe")
		}
	}
}

func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add([]byte(`{"hostId":"h1","memoryMB":1024,"maxSandboxes":4,"cachedCode":["ab"],"draining":true}`))
	f.Add([]byte(`{"hostId":""}`))
	f.Add([]byte(`{"memoryMB":-1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeHeartbeat(data)
		if err != nil {
			return
		}
		if st.Validate() != nil {
			t.Fatalf("decoded an invalid status %+v", st)
		}
		s := newService(t, nil)
		if err := s.Heartbeat(st); err != nil {
			t.Fatalf("valid status %+v rejected: %v", st, err)
		}
		if hs := s.Hosts(); len(hs) != 1 || hs[0].HostID != st.HostID {
			t.Fatalf("hosts %+v after heartbeat %+v", hs, st)
		}
	})
}
