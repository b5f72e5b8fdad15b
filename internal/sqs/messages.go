package sqs

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Message headers. Flint-Message-Id, Flint-Sent-At and Flint-Attr-* are
// those package asyncq/queues writes; the rest are the engine's.
const (
	hdrID        = "Flint-Message-Id"
	hdrSent      = "Flint-Sent-At"
	hdrAttrPfx   = "Flint-Attr-"
	hdrAttrs     = "Flint-Sqs-Attrs"
	hdrSender    = "Flint-Sqs-Sender"
	hdrDueAt     = "Flint-Sqs-Due"    // delayed messages: unix ms when due
	hdrTarget    = "Flint-Sqs-Target" // delayed messages: the queue subject
	hdrFirstRecv = "Flint-Sqs-First"
)

// MessageAttributeValue is one message attribute, as SQS's API shapes it.
type MessageAttributeValue struct {
	DataType    string  `json:"DataType"`
	StringValue *string `json:"StringValue,omitempty"`
	BinaryValue []byte  `json:"BinaryValue,omitempty"`
}

// SendInput is one message to send.
type SendInput struct {
	Body       string
	Attributes map[string]MessageAttributeValue
	// DelaySeconds overrides the queue's DelaySeconds when set.
	DelaySeconds *int
	// SenderID is reported as the SenderId attribute.
	SenderID string
}

// SendOutput describes a stored message.
type SendOutput struct {
	MessageID              string
	MD5OfMessageBody       string
	MD5OfMessageAttributes string // "" without attributes
}

// Message is one received message.
type Message struct {
	MessageID     string
	ReceiptHandle string
	Body          string
	MD5OfBody     string
	// Attributes are the system attributes: SentTimestamp, SenderId,
	// ApproximateReceiveCount, ApproximateFirstReceiveTimestamp.
	Attributes        map[string]string
	MessageAttributes map[string]MessageAttributeValue
}

// ReceiveInput says how to receive.
type ReceiveInput struct {
	Max int // 1..10
	// Wait is the long-poll time; nil takes the queue's
	// ReceiveMessageWaitTimeSeconds.
	Wait *time.Duration
	// Visibility overrides the queue's VisibilityTimeout when set.
	Visibility *int
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// MD5Hex is the hex MD5 of s, as SQS reports MD5OfMessageBody.
func MD5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// AttributesMD5 is SQS's MD5OfMessageAttributes: over the attributes
// sorted by name, each as length-prefixed name, length-prefixed data type,
// a transport byte (1 string, 2 binary) and the length-prefixed value. ""
// for no attributes.
func AttributesMD5(attrs map[string]MessageAttributeValue) string {
	if len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	h := md5.New()
	put := func(b []byte) {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(b)))
		h.Write(l[:])
		h.Write(b)
	}
	for _, n := range names {
		v := attrs[n]
		put([]byte(n))
		put([]byte(v.DataType))
		if v.BinaryValue != nil || strings.HasPrefix(v.DataType, "Binary") {
			h.Write([]byte{2})
			put(v.BinaryValue)
		} else {
			h.Write([]byte{1})
			s := ""
			if v.StringValue != nil {
				s = *v.StringValue
			}
			put([]byte(s))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// validBody reports whether every character is one SQS allows.
func validBody(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !(r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)) {
			return false
		}
	}
	return true
}

func validateAttrs(attrs map[string]MessageAttributeValue) (size int, err error) {
	if len(attrs) > 10 {
		return 0, Errorf(InvalidParameterValue, "Number of message attributes [%d] exceeds the allowed maximum [10].", len(attrs))
	}
	for n, v := range attrs {
		if n == "" || len(n) > 256 || strings.HasPrefix(strings.ToLower(n), "aws.") || strings.HasPrefix(strings.ToLower(n), "amazon.") {
			return 0, Errorf(InvalidParameterValue, "Message attribute name '%s' is invalid.", n)
		}
		base, _, _ := strings.Cut(v.DataType, ".")
		switch base {
		case "String", "Number":
			if v.StringValue == nil {
				return 0, Errorf(InvalidParameterValue, "Message (user) attribute '%s' must contain a non-empty value of type '%s'.", n, base)
			}
			if base == "Number" {
				if _, err := strconv.ParseFloat(*v.StringValue, 64); err != nil {
					return 0, Errorf(InvalidParameterValue, "Value %s for parameter MessageAttributes is invalid. Reason: Can't parse number attribute '%s'.", *v.StringValue, n)
				}
			}
			size += len(*v.StringValue)
		case "Binary":
			if v.BinaryValue == nil {
				return 0, Errorf(InvalidParameterValue, "Message (user) attribute '%s' must contain a non-empty value of type 'Binary'.", n)
			}
			size += len(v.BinaryValue)
		default:
			return 0, Errorf(InvalidParameterValue, "The type of message (user) attribute '%s' is invalid. You must use only the following supported type prefixes: Binary, Number, String.", n)
		}
		size += len(n) + len(v.DataType)
	}
	return size, nil
}

// Send stores one message on a queue (or, with a delay, in the delay
// stream until it is due) and returns after the backbone stored it.
func (s *Service) Send(ctx context.Context, account, name string, in SendInput) (SendOutput, error) {
	q, err := s.GetQueue(ctx, account, name)
	if err != nil {
		return SendOutput{}, err
	}
	return s.send(ctx, q, in)
}

func (s *Service) send(ctx context.Context, q *Queue, in SendInput) (SendOutput, error) {
	if in.Body == "" {
		return SendOutput{}, Errorf(MissingParameter, "The request must contain the parameter MessageBody.")
	}
	if !validBody(in.Body) {
		return SendOutput{}, Errorf(InvalidMessageContents, "Invalid binary character in the message body. Allowed: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.")
	}
	asize, err := validateAttrs(in.Attributes)
	if err != nil {
		return SendOutput{}, err
	}
	if len(in.Body)+asize > q.MaximumMessageSize {
		return SendOutput{}, Errorf(InvalidParameterValue, "One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", q.MaximumMessageSize)
	}
	delay := q.DelaySeconds
	if in.DelaySeconds != nil {
		delay = *in.DelaySeconds
		if delay < 0 || delay > MaxDelay {
			return SendOutput{}, Errorf(InvalidParameterValue, "Value %d for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900.", delay)
		}
	}
	id := newID()
	now := s.cfg.Clock()
	target := queueSubject + q.Account + "." + q.Name
	m := nats.NewMsg(target)
	m.Data = []byte(in.Body)
	m.Header.Set(hdrID, id)
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set(hdrSent, strconv.FormatInt(now.UnixMilli(), 10))
	if in.SenderID != "" {
		m.Header.Set(hdrSender, in.SenderID)
	}
	if len(in.Attributes) > 0 {
		b, _ := json.Marshal(in.Attributes)
		m.Header.Set(hdrAttrs, string(b))
	}
	if delay > 0 {
		m.Subject = delaySubject + q.Account + "." + q.Name
		m.Header.Set(hdrTarget, target)
		m.Header.Set(hdrDueAt, strconv.FormatInt(now.Add(time.Duration(delay)*time.Second).UnixMilli(), 10))
	}
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		return SendOutput{}, fmt.Errorf("sqs: send to %s/%s: %w", q.Account, q.Name, err)
	}
	return SendOutput{MessageID: id, MD5OfMessageBody: MD5Hex(in.Body), MD5OfMessageAttributes: AttributesMD5(in.Attributes)}, nil
}

// Receive takes up to in.Max visible messages off a queue, waiting up to
// the long-poll time for the first one. Each returned message stays
// invisible for the visibility timeout unless deleted. Messages received
// more than the redrive policy's maxReceiveCount times are moved to the
// dead-letter queue instead of being returned; expired ones are dropped.
func (s *Service) Receive(ctx context.Context, account, name string, in ReceiveInput) ([]Message, error) {
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
		batch, err = c.Fetch(1, jetstream.FetchMaxWait(min(left, time.Second)))
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
