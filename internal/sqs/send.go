package sqs

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
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
