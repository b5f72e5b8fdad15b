package placement

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// HeartbeatSubject is the NATS subject worker hosts publish their
// HostStatus on, as JSON.
const HeartbeatSubject = "flint.placement.heartbeat"

// maxHeartbeatBytes bounds the heartbeats Subscribe accepts.
const maxHeartbeatBytes = 1 << 20

// decodeHeartbeat parses and validates one heartbeat message.
func decodeHeartbeat(data []byte) (HostStatus, error) {
	if len(data) > maxHeartbeatBytes {
		return HostStatus{}, fmt.Errorf("placement: heartbeat of %d bytes is too large", len(data))
	}
	var st HostStatus
	if err := json.Unmarshal(data, &st); err != nil {
		return HostStatus{}, fmt.Errorf("placement: decode heartbeat: %w", err)
	}
	if err := st.Validate(); err != nil {
		return HostStatus{}, err
	}
	return st, nil
}

// Subscribe feeds the heartbeats published on HeartbeatSubject into s.
// Malformed heartbeats are logged and dropped. The subscription is known to
// the server when Subscribe returns. stop unsubscribes; a heartbeat being
// handled at that moment may still be applied. stop is idempotent.
func (s *Service) Subscribe(nc *nats.Conn) (stop func(), err error) {
	sub, err := nc.Subscribe(HeartbeatSubject, func(m *nats.Msg) {
		st, err := decodeHeartbeat(m.Data)
		if err == nil {
			err = s.Heartbeat(st)
		}
		if err != nil {
			s.log.Warn("heartbeat dropped", "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("placement: subscribe %s: %w", HeartbeatSubject, err)
	}
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("placement: subscribe %s: %w", HeartbeatSubject, err)
	}
	var once sync.Once
	return func() { once.Do(func() { _ = sub.Unsubscribe() }) }, nil
}

// StartHeartbeats publishes status() on HeartbeatSubject now and then every
// interval (DefaultHeartbeatInterval when interval <= 0) until stop is
// called; it is what a worker host runs. A failed publish is retried at the
// next tick. stop ends the goroutine, waits for it, and publishes one last
// heartbeat with Draining set, so that no new sandbox is placed on a host
// that is going away; stop is idempotent. status is called from the
// heartbeat goroutine and must be safe for that.
func StartHeartbeats(nc *nats.Conn, interval time.Duration, status func() HostStatus) (stop func()) {
	if interval <= 0 {
		interval = DefaultHeartbeatInterval
	}
	publish := func(st HostStatus) {
		data, err := json.Marshal(st)
		if err != nil {
			return // HostStatus always marshals
		}
		_ = nc.Publish(HeartbeatSubject, data)
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			publish(status())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-exited
			st := status()
			st.Draining = true
			publish(st)
			_ = nc.FlushTimeout(time.Second)
		})
	}
}
