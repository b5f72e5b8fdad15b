package sqs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Receive takes up to in.Max visible messages off a queue, waiting up to
// the long-poll time for the first one. Each returned message stays
// invisible for the visibility timeout unless deleted. Messages received
// more than the redrive policy's maxReceiveCount times are moved to the
// dead-letter queue instead of being returned; expired ones are dropped.
func (s *Service) Receive(ctx context.Context, account, name string, in ReceiveInput) ([]Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // take nothing for a receiver that is gone
	}
	out, err := s.receive(ctx, account, name, in)
	if ctx.Err() != nil && len(out) > 0 {
		// The receiver is gone (a closed connection, a stopped poller):
		// what it took is visible again at once rather than after the
		// visibility timeout.
		s.Release(out)
		return nil, ctx.Err()
	}
	return out, err
}

// Release makes messages this engine's Receive returned visible again
// (an abandoned receive) after releaseDelay rather than the visibility
// timeout. A released message has still been received: its receive count
// stays one higher, as in SQS.
func (s *Service) Release(msgs []Message) {
	for _, m := range msgs {
		if raw, err := base64.RawURLEncoding.DecodeString(m.ReceiptHandle); err == nil {
			if h, err := parseReply(string(raw)); err == nil {
				_ = s.nc.Publish(h.reply, nakDelay(releaseDelay))
			}
		}
	}
}

// releaseDelay outlasts the pull requests a stopping receiver may still
// have open (each waits at most longPollStep), so that a released message
// is not handed straight to another receiver that is going away.
const releaseDelay = longPollStep + 100*time.Millisecond

// longPollStep is the longest one pull request of a long poll waits.
const longPollStep = time.Second

func (s *Service) receive(ctx context.Context, account, name string, in ReceiveInput) ([]Message, error) {
	q, err := s.GetQueue(ctx, account, name)
	if err != nil {
		return nil, err
	}
	if in.Max < 1 || in.Max > MaxBatch {
		return nil, Errorf(InvalidParameterValue, "Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", in.Max)
	}
	wait := time.Duration(q.ReceiveMessageWaitTimeSeconds) * time.Second
	if in.Wait != nil {
		wait = *in.Wait
	}
	if wait < 0 || wait > MaxWaitSeconds*time.Second {
		return nil, Errorf(InvalidParameterValue, "Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", int(wait/time.Second))
	}
	vis := q.VisibilityTimeout
	if in.Visibility != nil {
		vis = *in.Visibility
		if vis < 0 || vis > MaxVisibility {
			return nil, Errorf(InvalidParameterValue, "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided.", vis)
		}
	}
	c, err := s.consumer(ctx, q, false)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	var out []Message
	for {
		batch, err := c.FetchNoWait(in.Max - len(out))
		if err != nil {
			return out, s.fetchErr(q, err)
		}
		out, err = s.collect(ctx, q, vis, batch, out)
		if err != nil || len(out) > 0 {
			return out, err
		}
		left := time.Until(deadline)
		if left < 10*time.Millisecond || ctx.Err() != nil {
			return out, nil
		}
		// Long poll: wait for one message, then take what else is there.
		batch, err = c.Fetch(1, jetstream.FetchMaxWait(min(left, longPollStep)))
		if err != nil {
			return out, s.fetchErr(q, err)
		}
		if out, err = s.collect(ctx, q, vis, batch, out); err != nil {
			return out, err
		}
		if len(out) > 0 && len(out) < in.Max {
			batch, err := c.FetchNoWait(in.Max - len(out))
			if err != nil {
				return out, s.fetchErr(q, err)
			}
			return s.collect(ctx, q, vis, batch, out)
		}
		if len(out) > 0 {
			return out, nil
		}
	}
}

func (s *Service) fetchErr(q *Queue, err error) error {
	// A consumer deleted by another server: forget it here.
	s.mu.Lock()
	delete(s.consumers, consumerName(q.Account, q.Name))
	s.mu.Unlock()
	return fmt.Errorf("sqs: receive from %s/%s: %w", q.Account, q.Name, err)
}

// collect turns one fetch's deliveries into messages, moving or dropping
// those that must not be returned.
func (s *Service) collect(ctx context.Context, q *Queue, vis int, batch jetstream.MessageBatch, out []Message) ([]Message, error) {
	now := s.cfg.Clock()
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		h := m.Headers()
		sent := md.Timestamp
		if ms, err := strconv.ParseInt(h.Get(hdrSent), 10, 64); err == nil {
			sent = time.UnixMilli(ms)
		}
		if now.Sub(sent) > time.Duration(q.MessageRetentionPeriod)*time.Second {
			s.remove(ctx, md.Sequence.Stream, m.Reply())
			continue
		}
		count := int(md.NumDelivered)
		if rp := q.RedrivePolicy; rp != nil && count > rp.MaxReceiveCount {
			if err := s.moveToDLQ(ctx, q, m, md.Sequence.Stream); err != nil {
				s.log.Warn("moving a message to its dead-letter queue", "queue", q.Account+"/"+q.Name, "dlq", rp.DeadLetterTargetArn, "err", err)
				_ = m.Nak()
			}
			continue
		}
		if vis != q.VisibilityTimeout || q.VisibilityTimeout == 0 {
			_ = s.nc.Publish(m.Reply(), nakDelay(time.Duration(vis)*time.Second))
		}
		out = append(out, s.toMessage(m, md, count, now))
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return out, fmt.Errorf("sqs: receive from %s/%s: %w", q.Account, q.Name, err)
	}
	return out, nil
}

func nakDelay(d time.Duration) []byte {
	if d <= 0 {
		return []byte("-NAK")
	}
	return fmt.Appendf(nil, `-NAK {"delay": %d}`, d.Nanoseconds())
}

func (s *Service) toMessage(m jetstream.Msg, md *jetstream.MsgMetadata, count int, now time.Time) Message {
	h := m.Headers()
	body := string(m.Data())
	msg := Message{
		MessageID:     h.Get(hdrID),
		ReceiptHandle: base64.RawURLEncoding.EncodeToString([]byte(m.Reply())),
		Body:          body,
		MD5OfBody:     MD5Hex(body),
		Attributes:    map[string]string{},
	}
	if msg.MessageID == "" {
		msg.MessageID = fmt.Sprintf("flint-%d", md.Sequence.Stream)
	}
	sent := md.Timestamp.UnixMilli()
	if ms, err := strconv.ParseInt(h.Get(hdrSent), 10, 64); err == nil {
		sent = ms
	}
	sender := h.Get(hdrSender)
	if sender == "" {
		sender = "flint" // written by the async path
	}
	first := now.UnixMilli()
	s.mu.Lock()
	if count > 1 {
		if f, ok := s.firstRecv[md.Sequence.Stream]; ok {
			first = f
		}
	} else {
		if len(s.firstRecv) > 200000 {
			clear(s.firstRecv)
		}
		s.firstRecv[md.Sequence.Stream] = first
	}
	s.mu.Unlock()
	msg.Attributes["SentTimestamp"] = strconv.FormatInt(sent, 10)
	msg.Attributes["SenderId"] = sender
	msg.Attributes["ApproximateReceiveCount"] = strconv.Itoa(count)
	msg.Attributes["ApproximateFirstReceiveTimestamp"] = strconv.FormatInt(first, 10)
	if raw := h.Get(hdrAttrs); raw != "" {
		_ = json.Unmarshal([]byte(raw), &msg.MessageAttributes)
	}
	for k, v := range h {
		if strings.HasPrefix(k, hdrAttrPfx) && len(k) > len(hdrAttrPfx) && len(v) > 0 {
			if msg.MessageAttributes == nil {
				msg.MessageAttributes = map[string]MessageAttributeValue{}
			}
			val := v[0]
			msg.MessageAttributes[k[len(hdrAttrPfx):]] = MessageAttributeValue{DataType: "String", StringValue: &val}
		}
	}
	return msg
}

// moveToDLQ republishes a delivery onto the queue's dead-letter queue
// (same message id, body and attributes; de-duplicated by source sequence
// so a retried move stores it once) and removes it from the source.
func (s *Service) moveToDLQ(ctx context.Context, q *Queue, m jetstream.Msg, seq uint64) error {
	_, acct, name, _ := ParseARN(q.RedrivePolicy.DeadLetterTargetArn)
	out := nats.NewMsg(queueSubject + acct + "." + name)
	out.Data = m.Data()
	for k, v := range m.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		out.Header[k] = v
	}
	out.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq-%s-%d", q.Name, seq))
	if _, err := s.js.PublishMsg(ctx, out); err != nil {
		return err
	}
	s.remove(ctx, seq, m.Reply())
	return nil
}

// remove deletes a stream message and acknowledges its delivery.
func (s *Service) remove(ctx context.Context, seq uint64, reply string) {
	if err := s.stream.DeleteMsg(ctx, seq); err != nil && !isGone(err) {
		s.log.Warn("deleting a queue message", "seq", seq, "err", err)
	}
	_ = s.nc.Publish(reply, []byte("+ACK"))
	s.mu.Lock()
	delete(s.firstRecv, seq)
	s.mu.Unlock()
}

func isGone(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrMsgNotFound) ||
		(errors.As(err, &apiErr) && (apiErr.Code == 404 || apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound)) ||
		strings.Contains(strings.ToLower(err.Error()), "no message found")
}
