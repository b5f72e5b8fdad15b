package sqs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startMover starts the loop that moves due delayed messages onto their
// queues. Every server runs one; they share one consumer, so each message
// moves once.
func (s *Service) startMover(ctx context.Context) error {
	c, err := s.delay.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       delayCons,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 100000,
		MaxDeliver:    -1,
	})
	if err != nil {
		return fmt.Errorf("sqs: delay consumer: %w", err)
	}
	mctx, stop := context.WithCancel(context.Background())
	s.stop, s.done, s.bg = stop, make(chan struct{}), mctx
	go func() {
		defer close(s.done)
		for mctx.Err() == nil {
			batch, err := c.Fetch(100, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				if mctx.Err() == nil {
					time.Sleep(time.Second)
				}
				continue
			}
			for m := range batch.Messages() {
				s.moveDue(mctx, m)
			}
		}
	}()
	return nil
}

// moveDue publishes a due delayed message onto its queue, or puts it back
// until it is due.
func (s *Service) moveDue(ctx context.Context, m jetstream.Msg) {
	h := m.Headers()
	due, err := strconv.ParseInt(h.Get(hdrDueAt), 10, 64)
	target := h.Get(hdrTarget)
	if err != nil || !strings.HasPrefix(target, queueSubject) {
		_ = m.Term()
		return
	}
	if left := time.Until(time.UnixMilli(due)); left > 0 {
		_ = m.NakWithDelay(left)
		return
	}
	out := nats.NewMsg(target)
	out.Data = m.Data()
	for k, v := range h {
		if k == hdrDueAt || k == hdrTarget || strings.HasPrefix(k, "Nats-") {
			continue
		}
		out.Header[k] = v
	}
	out.Header.Set(jetstream.MsgIDHeader, h.Get(hdrID))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.js.PublishMsg(pctx, out); err != nil {
		s.log.Warn("moving a delayed message onto its queue", "subject", target, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	_ = m.Ack()
}
