package asyncq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/writegate"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit. The embedded backbone fsyncs every stored message before
// its ack (sync_always), so one publish per event caps the accept rate at
// one fsync per event. Instead, Enqueue hands its event to the batcher,
// which publishes everything that arrived while the previous batch was
// being stored as ONE message on the inbox stream (FLINT_ASYNC_INBOX) and
// answers all those callers once that message is acknowledged: many events
// share one fsync.
//
// The dispatcher (one fetch loop per started process, on a durable
// work-queue consumer of the inbox) fans every batch out: for each event it
// publishes the per-function message on FLINT_ASYNC (Nats-Msg-Id =
// requestId) and creates the "queued" status record, all concurrently; only
// when every one of them is acknowledged does it ack the batch. A crash in
// between leaves the batch un-acked and it is fanned out again:
// re-published events are dropped by JetStream's de-duplication, events a
// poller has already touched (status no longer a fresh "queued") are
// skipped. Pollers only ever see per-function messages, so per-function
// fairness and the retry model are unchanged.
//
//	Enqueue ─► batcher ─(1 fsync per batch)─► FLINT_ASYNC_INBOX ─► 202
//	                                               │ dispatcher
//	              FLINT_ASYNC (per function) ◄─────┤ + status "queued"
//	                                               ▼
//	                                        ack the batch

const (
	// InboxStreamName is the stream of accepted, not yet dispatched batches.
	InboxStreamName = "FLINT_ASYNC_INBOX"
	inboxSubject    = "flint.asyncinbox.batch"
	inboxConsumer   = "async_dispatcher"
	// maxBatchEvents and maxBatchBytes bound one batch message.
	maxBatchEvents = 256
	maxBatchBytes  = 256 << 10
	// maxBatchedEvent: larger events are published on their own.
	maxBatchedEvent = 64 << 10
	// dispatchParallel batches are fanned out at once per process.
	dispatchParallel = 4
	// acceptedTTL bounds how long an accepted event is remembered in
	// memory when no dispatcher of this process records its status.
	acceptedTTL = 10 * time.Minute
)

// batch is the JSON body of an inbox message: whole event bodies.
type batch struct {
	Events []json.RawMessage `json:"events"`
}

// acceptReq is one event waiting for its batch to be stored.
type acceptReq struct {
	ev   *event
	body []byte
	done chan error // buffered(1); receives the batch's outcome
}

// batcher groups concurrent Enqueue calls into batch messages. It starts
// on first use and stops at Close.
type batcher struct {
	s       *Service
	in      chan *acceptReq
	once    sync.Once
	stop    chan struct{} // closed by close
	stopped chan struct{} // closed when the loop has exited

	mu       sync.Mutex         // guards accepted
	accepted map[string]*Status // stored in the inbox, status not yet recorded
}

func newBatcher(s *Service) *batcher {
	return &batcher{s: s, in: make(chan *acceptReq, maxBatchEvents), stop: make(chan struct{}),
		stopped: make(chan struct{}), accepted: map[string]*Status{}}
}

// accept queues ev for the next batch and waits until that batch is stored
// (nil) or failed. A ctx that ends first gives an error although the event
// may still be stored: the caller then does not know, as with any publish.
func (b *batcher) accept(ctx context.Context, ev *event, body []byte) error {
	b.once.Do(func() { go b.loop() })
	r := &acceptReq{ev: ev, body: body, done: make(chan error, 1)}
	select {
	case b.in <- r:
	case <-b.stop:
		return &lambdaerr.Error{Type: lambdaerr.Service, Message: fmt.Sprintf("enqueue %s: service closed", ev.RequestID)}
	case <-ctx.Done():
		return &lambdaerr.Error{Type: lambdaerr.Service, Message: fmt.Sprintf("enqueue %s: %v", ev.RequestID, ctx.Err())}
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return &lambdaerr.Error{Type: lambdaerr.Service, Message: fmt.Sprintf("enqueue %s: %v", ev.RequestID, ctx.Err())}
	case <-b.stopped:
		select { // the loop answers before it exits
		case err := <-r.done:
			return err
		default:
			return &lambdaerr.Error{Type: lambdaerr.Service, Message: fmt.Sprintf("enqueue %s: service closed", ev.RequestID)}
		}
	}
}

// loop publishes one batch at a time: whatever arrived while the previous
// one was being stored, up to maxBatchEvents / maxBatchBytes.
func (b *batcher) loop() {
	defer close(b.stopped)
	for {
		var first *acceptReq
		select {
		case first = <-b.in:
		case <-b.stop:
			for { // answer what is already queued, then exit
				select {
				case r := <-b.in:
					b.flush(b.fill(r))
				default:
					return
				}
			}
		}
		b.flush(b.fill(first))
	}
}

// fill adds queued requests to a batch starting with first.
func (b *batcher) fill(first *acceptReq) []*acceptReq {
	reqs, size := []*acceptReq{first}, len(first.body)
	for len(reqs) < maxBatchEvents {
		select {
		case r := <-b.in:
			if size+len(r.body) > maxBatchBytes {
				// Too big to join: publish this batch, then start the
				// next with r.
				b.flush(reqs)
				reqs, size = nil, 0
			}
			reqs, size = append(reqs, r), size+len(r.body)
		default:
			return reqs
		}
	}
	return reqs
}

func (b *batcher) flush(reqs []*acceptReq) {
	if len(reqs) == 0 {
		return
	}
	data := make([]byte, 0, 16+len(reqs)*(len(reqs[0].body)+1))
	data = append(data, `{"events":[`...)
	for i, r := range reqs {
		if i > 0 {
			data = append(data, ',')
		}
		data = append(data, r.body...)
	}
	data = append(data, "]}"...)
	msg := nats.NewMsg(inboxSubject)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, newUUID())
	// Checked again here: the backbone may have become full while the
	// batch gathered, and a refused batch is answered at once.
	err := writegate.Check(b.s.cfg.Gate, writegate.Events)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), b.s.cfg.WriteTimeout)
		gateErr := watchGate(ctx, cancel, b.s.cfg.Gate)
		err = b.s.publishIdempotent(ctx, msg)
		cancel()
		if ge := gateErr(); err != nil && ge != nil {
			// The backbone stopped taking writes while this batch was
			// in flight (e.g. the disk filled): say so now rather than
			// after WriteTimeout. The batch was not stored.
			err = ge
		} else if err != nil {
			b.s.log.Warn("publish event batch", "events", len(reqs), "err", err)
			err = writegate.Describe(fmt.Sprintf("the event (one of a batch of %d)", len(reqs)), err)
		}
	}
	if err != nil {
		for _, r := range reqs {
			r.done <- err
		}
		return
	}
	// Stored: remember the events as queued until the dispatcher has
	// recorded their status, then answer.
	b.mu.Lock()
	for _, r := range reqs {
		b.accepted[r.ev.RequestID] = newStatus(r.ev)
	}
	b.mu.Unlock()
	for _, r := range reqs {
		r.done <- nil
	}
}

// publishAttempt bounds one attempt of publishIdempotent.
const publishAttempt = time.Second

// publishIdempotent publishes msg, which carries a Nats-Msg-Id, until the
// backbone acknowledges it or ctx ends: an attempt that is not answered
// within publishAttempt (its server died, its stream is electing a leader)
// is sent again, and JetStream's de-duplication stores it once whichever
// attempt got through. So a node lost mid-publish costs about a second, not
// the whole WriteTimeout. Errors the backbone answers with (storage full,
// too large) are returned at once.
func (s *Service) publishIdempotent(ctx context.Context, msg *nats.Msg) error {
	for {
		actx, cancel := context.WithTimeout(ctx, publishAttempt)
		_, err := s.cfg.JetStream.PublishMsg(actx, msg)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		noAnswer := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
			errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
			errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) ||
			// An earlier attempt is still being replicated (no quorum
			// yet): its outcome is not known, so ask again.
			strings.Contains(err.Error(), "duplicate message id is in process")
		if !noAnswer {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// watchGate checks gate every gateWatchInterval while ctx lasts and
// cancels ctx when it starts refusing; the returned func stops the watch
// and gives the gate's error, if it refused.
func watchGate(ctx context.Context, cancel context.CancelFunc, gate writegate.Gate) func() error {
	if gate == nil {
		return func() error { return nil }
	}
	var refused error
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(gateWatchInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := gate.Allow(writegate.Events); err != nil {
					refused = err
					cancel()
					return
				}
			}
		}
	}()
	return func() error {
		close(done)
		<-stopped
		return refused
	}
}

// gateWatchInterval is how often a batch in flight checks the gate.
const gateWatchInterval = 50 * time.Millisecond

// queued returns the in-memory queued status of an accepted event whose
// record is not written yet, or nil.
func (b *batcher) queued(id string) *Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.accepted[id]; st != nil {
		c := *st
		return &c
	}
	return nil
}

// forget drops ids whose status records exist now.
func (b *batcher) forget(ids []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range ids {
		delete(b.accepted, id)
	}
}

// prune drops entries accepted more than acceptedTTL before now: their
// batch was dispatched by another process (or none has run since).
func (b *batcher) prune(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, st := range b.accepted {
		if now.Sub(st.EnqueuedAt) > acceptedTTL {
			delete(b.accepted, id)
		}
	}
}

// close stops the batcher after answering what is queued.
func (b *batcher) close() {
	select {
	case <-b.stop:
		return
	default:
	}
	close(b.stop)
	started := true
	b.once.Do(func() { started = false })
	if started {
		<-b.stopped
	} else {
		close(b.stopped)
	}
}

// openInbox creates (or updates) the inbox stream.
func openInbox(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Stream, error) {
	return openWorkQueue(ctx, js, cfg, InboxStreamName,
		"Flint accepted asynchronous invocations, in batches, before dispatch", inboxSubject, false)
}

// dispatchLoop fans batches out until the poller closes.
func (p *poller) dispatchLoop() {
	defer p.loopsWG.Done()
	log := p.s.log.With("consumer", inboxConsumer)
	var cons jetstream.Consumer
	for cons == nil {
		ctx, cancel := context.WithTimeout(p.ctx, setupTimeout)
		c, err := p.s.inbox.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:           inboxConsumer,
			Description:       "Flint async dispatcher: batches to per-function messages",
			AckPolicy:         jetstream.AckExplicitPolicy,
			AckWait:           p.s.cfg.AckWait,
			MaxDeliver:        -1,
			DeliverPolicy:     jetstream.DeliverAllPolicy,
			InactiveThreshold: 24 * time.Hour,
		})
		cancel()
		if err == nil {
			cons = c
			break
		}
		log.Warn("create consumer", "err", err)
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	slots := make(chan struct{}, dispatchParallel)
	lastPrune := time.Now()
	for {
		if !p.waitWritable() {
			return
		}
		select {
		case slots <- struct{}{}:
		case <-p.ctx.Done():
			return
		}
		if time.Since(lastPrune) > time.Minute {
			p.s.batcher.prune(p.s.cfg.Clock.Now())
			lastPrune = time.Now()
		}
		fctx, cancel := context.WithTimeout(p.ctx, p.s.cfg.FetchWait)
		msg, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		if err != nil {
			<-slots
			if p.ctx.Err() != nil {
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
				log.Warn("fetch", "err", err)
				time.Sleep(100 * time.Millisecond) // bounded pause before the next pull
			}
			continue
		}
		// A batch being dispatched is finished even when Close begins:
		// it takes a few fsyncs, and a half-done one is redone anyway.
		p.flightWG.Add(1)
		go func() {
			defer p.flightWG.Done()
			defer func() { <-slots }()
			p.s.dispatch(msg)
		}()
	}
}

// dispatch fans one batch out and acks it once every event is on its
// function's subject with a status record. On any failure the batch is
// handed back and redone later.
func (s *Service) dispatch(msg jetstream.Msg) {
	var b batch
	if err := json.Unmarshal(msg.Data(), &b); err != nil {
		s.log.Error("dropping malformed event batch", "err", err)
		_ = msg.TermWithReason("malformed batch")
		return
	}
	redelivered := false
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
		redelivered = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex // guards failed
		failed error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if failed == nil {
			failed = err
		}
	}
	ids := make([]string, 0, len(b.Events))
	keys := map[fnKey]bool{}
	type decoded struct {
		ev  *event
		raw json.RawMessage
	}
	evs := make([]decoded, 0, len(b.Events))
	for _, raw := range b.Events {
		ev, err := decodeEvent(raw)
		if err != nil {
			s.log.Error("dropping malformed event in batch", "err", err)
			continue
		}
		ids, keys[ev.key()] = append(ids, ev.RequestID), true
		evs = append(evs, decoded{ev, raw})
	}
	// A first delivery stores all its events with one atomic publish
	// (atomic.go); a redelivery, or a refused batch, one by one.
	published := false
	if s.atomic && !redelivered && len(evs) > 1 {
		msgs := make([]*nats.Msg, len(evs))
		for i, d := range evs {
			msgs[i] = nats.NewMsg(d.ev.key().subject())
			msgs[i].Data = d.raw
			msgs[i].Header.Set(jetstream.MsgIDHeader, d.ev.RequestID)
		}
		if err := s.publishAtomic(ctx, msgs); err != nil {
			s.log.Debug("atomic publish of event batch, publishing one by one", "events", len(msgs), "err", err)
		} else {
			published = true
		}
	}
	for _, d := range evs {
		ev, raw := d.ev, d.raw
		wg.Add(1)
		go func() {
			defer wg.Done()
			if redelivered {
				// A poller that has touched the event wrote its status:
				// the event was published before, and maybe already
				// run and acked (then de-duplication may no longer
				// hold it): do not publish it again.
				st, err := s.status.get(ctx, ev.RequestID)
				if err != nil {
					fail(err)
					return
				}
				if st != nil && (st.Status != StateQueued || st.Attempts > 0) {
					return
				}
			}
			var inner sync.WaitGroup
			inner.Add(1)
			go func() {
				defer inner.Done()
				if err := s.status.create(ctx, newStatus(ev)); err != nil {
					fail(fmt.Errorf("status %s: %w", ev.RequestID, err))
				}
			}()
			if !published {
				m := nats.NewMsg(ev.key().subject())
				m.Data = raw
				m.Header.Set(jetstream.MsgIDHeader, ev.RequestID)
				if _, err := s.cfg.JetStream.PublishMsg(ctx, m); err != nil {
					fail(fmt.Errorf("publish %s: %w", ev.RequestID, err))
				}
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	if failed != nil {
		s.log.Warn("dispatch event batch, will retry", "events", len(b.Events), "err", failed)
		if err := msg.NakWithDelay(s.cfg.ThrottleBackoffMin); err != nil {
			s.log.Warn("nak event batch", "err", err)
		}
		return
	}
	if err := msg.DoubleAck(ctx); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		// Redone after AckWait; the redo publishes nothing twice.
		s.log.Warn("ack event batch", "err", err)
	}
	s.batcher.forget(ids)
	for k := range keys {
		s.poller.poke(k)
	}
}
