package esm

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/sqs"
)

// maxPayload bounds one batch's bodies below Lambda's 6 MB invoke limit
// (the event's JSON adds the attributes and escaping).
const maxPayload = 5 << 20

// poller runs one mapping on this server: it takes a concurrency slot,
// gathers a batch, and invokes the function with it in its own goroutine.
type poller struct {
	s      *Service
	m      Mapping
	log    *slog.Logger
	ctx    context.Context // cancelled to stop receiving
	cancel context.CancelFunc
	done   chan struct{} // closed when every batch of the poller finished
	// received is closed when the receivers returned: the poller takes
	// nothing more off the queue (its batches may still be running).
	received chan struct{}
}

func newPoller(s *Service, m Mapping) *poller {
	ctx, cancel := context.WithCancel(context.Background())
	return &poller{s: s, m: m, ctx: ctx, cancel: cancel, done: make(chan struct{}), received: make(chan struct{}),
		log: s.log.With("uuid", m.UUID, "function", m.FunctionArn, "queue", m.EventSourceArn)}
}

func (p *poller) run() {
	defer close(p.done)
	conc := p.s.cfg.DefaultConcurrency
	if sc := p.m.ScalingConfig; sc != nil && sc.MaximumConcurrency > 0 {
		conc = sc.MaximumConcurrency
	}
	_, account, queue, _ := sqs.ParseARN(p.m.EventSourceArn)
	slots := make(chan struct{}, conc)
	var batches, receivers sync.WaitGroup
	defer batches.Wait()
	// A few receivers take turns filling the slots, so that receiving is
	// not the bottleneck (each receive is a round trip to the backbone).
	for range min(conc, maxReceivers) {
		receivers.Add(1)
		go func() {
			defer receivers.Done()
			p.receive(account, queue, slots, &batches)
		}()
	}
	receivers.Wait()
	close(p.received)
}

// maxReceivers bounds one mapping's concurrent receives on one server.
const maxReceivers = 4

// receive is one receiver of the poller: it takes a slot, gathers a batch
// and hands it to a goroutine that invokes the function and frees the
// slot, until the poller stops.
func (p *poller) receive(account, queue string, slots chan struct{}, wg *sync.WaitGroup) {
	backoff := time.Duration(0)
	for p.ctx.Err() == nil { // (select below picks at random among ready cases)
		select {
		case slots <- struct{}{}:
		case <-p.ctx.Done():
			return
		}
		batch, err := p.gather(account, queue)
		if err != nil {
			<-slots
			if p.ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			p.log.Warn("receiving from the event source", "err", err, "retryIn", backoff)
			select {
			case <-time.After(backoff):
			case <-p.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		if len(batch) == 0 {
			<-slots
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			p.process(account, queue, batch)
		}()
	}
}

// gather receives up to BatchSize messages: a long poll for the first
// ones, then, with a batching window, more until the batch is full, the
// window ends or the payload would grow too large.
func (p *poller) gather(account, queue string) ([]sqs.Message, error) {
	var out []sqs.Message
	size := 0
	window := time.Duration(p.m.MaximumBatchingWindowInSeconds) * time.Second
	var deadline time.Time
	for len(out) < p.m.BatchSize && size < maxPayload {
		wait := 20 * time.Second
		if len(out) > 0 {
			wait = time.Until(deadline)
			if wait <= 0 {
				break
			}
		}
		msgs, err := p.s.cfg.Queues.Receive(p.ctx, account, queue, sqs.ReceiveInput{Max: min(sqs.MaxBatch, p.m.BatchSize-len(out)), Wait: &wait})
		if len(out) == 0 {
			deadline = time.Now().Add(window)
		}
		out = append(out, msgs...)
		for _, m := range msgs {
			size += len(m.Body)
		}
		if err != nil {
			if p.ctx.Err() != nil {
				// Stopping (disabled, updated, deleted, shutting down):
				// hand back what was gathered.
				p.s.cfg.Queues.Release(out)
				return nil, nil
			}
			if len(out) > 0 {
				return out, nil // invoke what was taken; it is in flight
			}
			return nil, err
		}
		if len(out) == 0 && p.ctx.Err() != nil {
			return nil, nil
		}
		if len(out) > 0 && window == 0 {
			break
		}
	}
	return out, nil
}

// record is one message of Lambda's SQS event.
type record struct {
	MessageID              string                    `json:"messageId"`
	ReceiptHandle          string                    `json:"receiptHandle"`
	Body                   string                    `json:"body"`
	Attributes             map[string]string         `json:"attributes"`
	MessageAttributes      map[string]eventAttribute `json:"messageAttributes"`
	MD5OfMessageAttributes *string                   `json:"md5OfMessageAttributes"`
	MD5OfBody              string                    `json:"md5OfBody"`
	EventSource            string                    `json:"eventSource"`
	EventSourceARN         string                    `json:"eventSourceARN"`
	AWSRegion              string                    `json:"awsRegion"`
}

type eventAttribute struct {
	StringValue      *string  `json:"stringValue,omitempty"`
	BinaryValue      []byte   `json:"binaryValue,omitempty"`
	StringListValues []string `json:"stringListValues"`
	BinaryListValues [][]byte `json:"binaryListValues"`
	DataType         string   `json:"dataType"`
}

// Event is Lambda's SQS event for a batch.
func Event(arn, region string, batch []sqs.Message) []byte {
	recs := make([]record, len(batch))
	for i, m := range batch {
		r := record{MessageID: m.MessageID, ReceiptHandle: m.ReceiptHandle, Body: m.Body, Attributes: m.Attributes,
			MessageAttributes: map[string]eventAttribute{}, MD5OfBody: m.MD5OfBody,
			EventSource: "aws:sqs", EventSourceARN: arn, AWSRegion: region}
		for k, v := range m.MessageAttributes {
			r.MessageAttributes[k] = eventAttribute{StringValue: v.StringValue, BinaryValue: v.BinaryValue,
				StringListValues: []string{}, BinaryListValues: [][]byte{}, DataType: v.DataType}
		}
		if md5 := sqs.AttributesMD5(m.MessageAttributes); md5 != "" {
			r.MD5OfMessageAttributes = &md5
		}
		recs[i] = r
	}
	b, _ := json.Marshal(struct {
		Records []record `json:"Records"`
	}{recs})
	return b
}

// process invokes the function with one batch and deletes what succeeded.
func (p *poller) process(account, queue string, batch []sqs.Message) {
	fn, _, err := p.s.cfg.Functions.Resolve(context.Background(), account, p.m.Function, p.m.Qualifier)
	if err != nil {
		p.log.Warn("resolving the mapping's function; the batch becomes visible again after the visibility timeout", "err", err)
		return
	}
	// The invocation is not tied to the poller: a poller stopped while it
	// runs lets it finish (bounded by the function's timeout).
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(fn.Timeout)*time.Second+30*time.Second)
	defer cancel()
	req := invocation.Request{RequestID: newUUID(), Payload: Event(p.m.EventSourceArn, p.s.cfg.Region, batch)}
	res, err := p.s.cfg.Invoker.Invoke(ctx, fn, req)
	if err != nil {
		p.log.Warn("invoking the function; the batch becomes visible again after the visibility timeout", "requestId", req.RequestID, "err", err)
		return
	}
	if res.FunctionError != "" {
		p.log.Info("function error; the batch becomes visible again after the visibility timeout", "requestId", req.RequestID, "errorType", res.ErrorType, "messages", len(batch))
		return
	}
	keep := map[string]bool{}
	if p.m.reportsItemFailures() {
		var ok bool
		if keep, ok = itemFailures(res.Payload, batch); !ok {
			p.log.Info("unreadable batchItemFailures: the whole batch is retried", "requestId", req.RequestID)
			return
		}
	}
	done := make([]sqs.Message, 0, len(batch))
	for _, m := range batch {
		if !keep[m.MessageID] {
			done = append(done, m)
		}
	}
	if err := p.s.cfg.Queues.DeleteReceived(ctx, account, queue, done); err != nil {
		p.log.Warn("deleting processed messages; those not deleted are received again after the visibility timeout", "err", err)
	}
}

// itemFailures reads a ReportBatchItemFailures response: the ids to keep.
// ok is false when the whole batch counts as failed: a response that is
// not such a document, or an itemIdentifier that is empty or names no
// message of the batch (Lambda's rules). An empty or null response, or one
// without batchItemFailures, means every message succeeded.
func itemFailures(payload []byte, batch []sqs.Message) (keep map[string]bool, ok bool) {
	keep = map[string]bool{}
	trimmed := string(payload)
	if trimmed == "" || trimmed == "null" {
		return keep, true
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(payload, &obj); err != nil {
		// Not an object: valid JSON (a bare string or number) carries no
		// failures; anything else is a failed batch.
		return keep, json.Valid(payload)
	}
	var resp struct {
		BatchItemFailures []struct {
			ItemIdentifier *string `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if raw, ok := obj["batchItemFailures"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &resp.BatchItemFailures); err != nil {
			return nil, false
		}
	}
	ids := map[string]bool{}
	for _, m := range batch {
		ids[m.MessageID] = true
	}
	for _, f := range resp.BatchItemFailures {
		if f.ItemIdentifier == nil || !ids[*f.ItemIdentifier] {
			return nil, false
		}
		keep[*f.ItemIdentifier] = true
	}
	return keep, true
}
