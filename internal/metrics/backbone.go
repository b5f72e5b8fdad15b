package metrics

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream returns js with its synchronous publishes (Publish,
// PublishMsg: each returns once the backbone stored the message) timed in
// flint_backbone_publish_seconds{component}. Everything else passes
// through unchanged.
func (m *Metrics) JetStream(js jetstream.JetStream, component string) jetstream.JetStream {
	return &timedJetStream{JetStream: js, obs: m.publish.WithLabelValues(component)}
}

type timedJetStream struct {
	jetstream.JetStream
	obs interface{ Observe(float64) }
}

func (t *timedJetStream) Publish(ctx context.Context, subject string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	t0 := time.Now()
	ack, err := t.JetStream.Publish(ctx, subject, data, opts...)
	if err == nil {
		t.obs.Observe(time.Since(t0).Seconds())
	}
	return ack, err
}

func (t *timedJetStream) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	t0 := time.Now()
	ack, err := t.JetStream.PublishMsg(ctx, msg, opts...)
	if err == nil {
		t.obs.Observe(time.Since(t0).Seconds())
	}
	return ack, err
}
