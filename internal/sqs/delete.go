package sqs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// handle is a parsed receipt handle.
type handle struct {
	reply    string
	seq      uint64
	consumer string
}

// parseHandle decodes a receipt handle and checks that it was issued for
// queue name of account: a JetStream ack subject of the queue's consumer
// in one of the two layouts the server uses (9 tokens, or 12 with a
// domain), of plain subject characters only. A handle can still name
// another queue's stream sequence: callers check the stored message's
// subject before deleting by sequence.
func parseHandle(account, name, h string) (handle, error) {
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil || !strings.HasPrefix(string(raw), "$JS.ACK.") {
		return handle{}, badHandle(h)
	}
	for _, c := range raw {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '$') {
			return handle{}, badHandle(h)
		}
	}
	hd, err := parseReply(string(raw))
	if err != nil || hd.consumer != consumerName(account, name) {
		return handle{}, badHandle(h)
	}
	return hd, nil
}

// parseReply reads an ack subject of FLINT_QUEUES.
func parseReply(raw string) (handle, error) {
	t := strings.Split(raw, ".")
	for _, tok := range t {
		if tok == "" {
			return handle{}, errors.New("empty token")
		}
	}
	var stream, cons, seq string
	switch len(t) {
	case 9:
		stream, cons, seq = t[2], t[3], t[5]
	case 12:
		stream, cons, seq = t[4], t[5], t[7]
	default:
		return handle{}, errors.New("not an ack subject")
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || stream != "FLINT_QUEUES" {
		return handle{}, errors.New("not an ack subject of " + "FLINT_QUEUES")
	}
	return handle{reply: raw, seq: n, consumer: cons}, nil
}

// ownMessage reports whether stream sequence seq is a message of queue
// name of account (false when it is gone).
func (s *Service) ownMessage(ctx context.Context, account, name string, seq uint64) (bool, error) {
	raw, err := s.stream.GetMsg(ctx, seq)
	if err != nil {
		if isGone(err) {
			return false, nil
		}
		return false, fmt.Errorf("sqs: message %d of %s/%s: %w", seq, account, name, err)
	}
	return raw.Subject == queueSubject+account+"."+name, nil
}

// DeleteMessage deletes the message a receipt handle names. Deleting a
// message already deleted succeeds, as in SQS.
func (s *Service) DeleteMessage(ctx context.Context, account, name, receipt string) error {
	if _, err := s.GetQueue(ctx, account, name); err != nil {
		return err
	}
	h, err := parseHandle(account, name, receipt)
	if err != nil {
		return err
	}
	own, err := s.ownMessage(ctx, account, name, h.seq)
	if err != nil {
		return err
	}
	if !own {
		return nil // already deleted (or never this queue's): nothing to do
	}
	if err := s.stream.DeleteMsg(ctx, h.seq); err != nil && !isGone(err) {
		return fmt.Errorf("sqs: delete message of %s/%s: %w", account, name, err)
	}
	if err := s.nc.Publish(h.reply, []byte("+ACK")); err != nil {
		return fmt.Errorf("sqs: delete message of %s/%s: %w", account, name, err)
	}
	s.mu.Lock()
	delete(s.firstRecv, h.seq)
	s.mu.Unlock()
	return nil
}

// DeleteReceived deletes messages this engine's Receive returned from
// queue name of account (an event source mapping's processed batch). Their
// handles are trusted, so it skips the checks DeleteMessage makes for a
// caller's handle; and instead of one stream delete per message (a
// JetStream API call each, the cost that bounds a mapping's throughput) it
// acknowledges each delivery, waiting for the server to confirm, so no
// receiver gets them again, and schedules a purge of the queue's subject
// below the consumer's ack floor, where every message is acknowledged.
// It returns the first error.
func (s *Service) DeleteReceived(ctx context.Context, account, name string, msgs []Message) error {
	errs := make(chan error, len(msgs))
	for _, m := range msgs {
		go func() {
			raw, err := base64.RawURLEncoding.DecodeString(m.ReceiptHandle)
			if err != nil {
				errs <- badHandle(m.ReceiptHandle)
				return
			}
			h, err := parseReply(string(raw))
			if err != nil || h.consumer != consumerName(account, name) {
				errs <- badHandle(m.ReceiptHandle)
				return
			}
			s.mu.Lock()
			delete(s.firstRecv, h.seq)
			s.mu.Unlock()
			if _, err := s.nc.RequestWithContext(ctx, h.reply, []byte("+ACK")); err != nil {
				errs <- fmt.Errorf("sqs: acknowledge message %s: %w", m.MessageID, err)
				return
			}
			errs <- nil
		}()
	}
	var first error
	for range msgs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	s.schedulePurge(account, name)
	return first
}

// purgeDelay gathers the acknowledgements of many batches into one purge.
const purgeDelay = 200 * time.Millisecond

// schedulePurge purges the acknowledged messages of a queue soon, once
// for every batch acknowledged meanwhile.
func (s *Service) schedulePurge(account, name string) {
	k := key(account, name)
	s.mu.Lock()
	if s.purging[k] {
		s.mu.Unlock()
		return
	}
	s.purging[k] = true
	s.mu.Unlock()
	time.AfterFunc(purgeDelay, func() {
		s.mu.Lock()
		delete(s.purging, k)
		s.mu.Unlock()
		if s.bg.Err() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(s.bg, 30*time.Second)
		defer cancel()
		if err := s.purgeAcked(ctx, account, name); err != nil {
			s.log.Warn("purging acknowledged messages", "queue", k, "err", err)
		}
	})
}

// purgeAcked removes a queue's messages below its consumer's ack floor:
// every one of them was acknowledged (deleted) or was already gone.
func (s *Service) purgeAcked(ctx context.Context, account, name string) error {
	c, err := s.stream.Consumer(ctx, consumerName(account, name))
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil // the queue was deleted
		}
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	floor := info.AckFloor.Stream
	if floor == 0 {
		return nil
	}
	return s.stream.Purge(ctx, jetstream.WithPurgeSubject(queueSubject+account+"."+name), jetstream.WithPurgeSequence(floor+1))
}

// ChangeVisibility makes a received message visible again after secs
// seconds (0: at once).
func (s *Service) ChangeVisibility(ctx context.Context, account, name, receipt string, secs int) error {
	if _, err := s.GetQueue(ctx, account, name); err != nil {
		return err
	}
	h, err := parseHandle(account, name, receipt)
	if err != nil {
		return err
	}
	if secs < 0 || secs > MaxVisibility {
		return Errorf(InvalidParameterValue, "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200.", secs)
	}
	if own, err := s.ownMessage(ctx, account, name, h.seq); err != nil {
		return err
	} else if !own {
		return Errorf(MessageNotInflight, "Message does not exist or is not available for visibility timeout change.")
	}
	if err := s.nc.Publish(h.reply, nakDelay(time.Duration(secs)*time.Second)); err != nil {
		return fmt.Errorf("sqs: change visibility on %s/%s: %w", account, name, err)
	}
	return nil
}
