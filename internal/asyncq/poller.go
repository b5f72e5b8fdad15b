package asyncq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/writegate"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// poller moves events off the queue. Fairness design: every function (of
// every account) has its own durable pull consumer on its own subject
// (work-queue streams allow non-overlapping consumers), and its own fetch
// loop here that pulls one event at a time and only while the function has
// fewer than PerFunctionConcurrency events in flight. A busy or slow
// function therefore holds at most that many slots and never blocks the
// delivery of another function's events. A global semaphore of Concurrency
// slots bounds all running invocations; its waiters queue in FIFO order, so
// functions take turns when it is full. Events waiting for a retry sit in
// JetStream (NakWithDelay), not in a goroutine.
//
// Loops start when the dispatcher (or Enqueue, for a large event) pokes
// them, when Start finds queued events, and when the periodic discovery
// (DiscoverInterval) sees a subject with events that has no loop (events
// dispatched by another process). A loop ends after IdleTimeout without
// events when its consumer has nothing pending. The same start runs the
// inbox dispatcher (batch.go).
type poller struct {
	s      *Service
	global chan struct{} // global concurrency slots

	ctx     context.Context // cancelled when Close begins: stop fetching
	cancel  context.CancelFunc
	runCtx  context.Context // cancelled when Close's ctx ends: abandon invocations
	abandon context.CancelFunc

	loopsWG  sync.WaitGroup // fetch loops and the discovery loop
	flightWG sync.WaitGroup // running events

	mu      sync.Mutex        // guards started, closed, loops
	started bool              //
	closed  bool              //
	loops   map[fnKey]*fnLoop // running fetch loops
}

// fnLoop is one function's fetch loop.
type fnLoop struct {
	key   fnKey
	slots chan struct{} // per-function in-flight slots
	// poked is set (under poller.mu) when new events may have arrived,
	// so an idle loop about to exit keeps going instead.
	poked bool
}

func newPoller(s *Service) *poller {
	p := &poller{s: s, global: make(chan struct{}, s.cfg.Concurrency), loops: map[fnKey]*fnLoop{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.runCtx, p.abandon = context.WithCancel(context.Background())
	return p
}

func (p *poller) start() error {
	p.mu.Lock()
	if p.started || p.closed {
		p.mu.Unlock()
		return errors.New("asyncq: Start called twice or after Close")
	}
	p.started = true
	p.mu.Unlock()
	if err := p.discover(); err != nil {
		return err
	}
	p.loopsWG.Add(2)
	go p.discoverLoop()
	go p.dispatchLoop()
	return nil
}

// poke makes sure the function has a running fetch loop.
func (p *poller) poke(k fnKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started || p.closed {
		return
	}
	if l, ok := p.loops[k]; ok {
		l.poked = true
		return
	}
	l := &fnLoop{key: k, slots: make(chan struct{}, p.s.cfg.PerFunctionConcurrency)}
	p.loops[k] = l
	p.loopsWG.Add(1)
	go p.run(l)
}

// discover starts loops for every function with events in the stream.
func (p *poller) discover() error {
	ctx, cancel := context.WithTimeout(p.ctx, setupTimeout)
	defer cancel()
	info, err := p.s.stream.Info(ctx, jetstream.WithSubjectFilter(subjectPrefix+">"))
	if err != nil {
		return fmt.Errorf("asyncq: discover queued events: %w", err)
	}
	for subj, n := range info.State.Subjects {
		if n == 0 {
			continue
		}
		rest := strings.TrimPrefix(subj, subjectPrefix)
		acct, name, ok := strings.Cut(rest, ".")
		if !ok || !validToken(acct) || !validToken(name) {
			continue
		}
		p.poke(fnKey{acct, name})
	}
	return nil
}

func (p *poller) discoverLoop() {
	defer p.loopsWG.Done()
	t := time.NewTicker(p.s.cfg.DiscoverInterval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			if err := p.discover(); err != nil && p.ctx.Err() == nil {
				p.s.log.Warn("discover", "err", err)
			}
		}
	}
}

// run is the fetch loop of one function.
func (p *poller) run(l *fnLoop) {
	defer p.loopsWG.Done()
	log := p.s.log.With("account", l.key.account, "function", l.key.name)
	cons, err := p.consumer(l.key)
	for err != nil {
		log.Warn("create consumer", "err", err)
		select {
		case <-p.ctx.Done():
			p.remove(l)
			return
		case <-time.After(time.Second):
		}
		cons, err = p.consumer(l.key)
	}
	idleSince := time.Now()
	for {
		if !p.waitWritable() {
			p.remove(l)
			return
		}
		// Wait for a per-function slot before pulling, so events beyond
		// the function's budget stay in JetStream for other pollers.
		select {
		case l.slots <- struct{}{}:
		case <-p.ctx.Done():
			p.remove(l)
			return
		}
		fctx, cancel := context.WithTimeout(p.ctx, p.s.cfg.FetchWait)
		msg, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		if err != nil {
			<-l.slots
			if p.ctx.Err() != nil {
				p.remove(l)
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
				log.Warn("fetch", "err", err)
				time.Sleep(100 * time.Millisecond) // bounded pause before the next pull
			}
			if time.Since(idleSince) >= p.s.cfg.IdleTimeout && p.tryExit(l, cons) {
				return
			}
			continue
		}
		idleSince = time.Now()
		if p.ctx.Err() != nil {
			// Closing: hand it straight back.
			_ = msg.Nak()
			<-l.slots
			p.remove(l)
			return
		}
		p.flightWG.Add(1)
		go p.process(l, msg)
	}
}

// waitWritable waits while the backbone cannot take writes (running an
// event writes its status and its ack, and a failed write would leave it
// "running" until redelivery); false when the poller closes first.
func (p *poller) waitWritable() bool {
	for writegate.Check(p.s.cfg.Gate, writegate.Events) != nil {
		select {
		case <-p.ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
	return true
}

// process runs one event: it keeps the message's ack deadline extended
// from the moment it is fetched, waits for a global slot, and handles it.
func (p *poller) process(l *fnLoop, msg jetstream.Msg) {
	defer p.flightWG.Done()
	defer func() { <-l.slots }()
	stop := make(chan struct{})
	var hb sync.WaitGroup
	hb.Add(1)
	go func() {
		defer hb.Done()
		t := time.NewTicker(p.s.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	defer func() { close(stop); hb.Wait() }()
	select {
	case p.global <- struct{}{}:
	case <-p.runCtx.Done():
		_ = msg.Nak()
		return
	}
	defer func() { <-p.global }()
	p.s.handle(p.runCtx, msg)
}

// tryExit ends an idle loop unless it was poked or its consumer still has
// events (e.g. waiting for a retry). It reports whether the loop ended.
func (p *poller) tryExit(l *fnLoop, cons jetstream.Consumer) bool {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	info, err := cons.Info(ctx)
	cancel()
	if err != nil || info.NumPending > 0 || info.NumAckPending > 0 || len(l.slots) > 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.poked {
		l.poked = false
		return false
	}
	delete(p.loops, l.key)
	return true
}

func (p *poller) remove(l *fnLoop) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loops[l.key] == l {
		delete(p.loops, l.key)
	}
}

// consumer creates or binds the function's durable consumer.
func (p *poller) consumer(k fnKey) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(p.ctx, setupTimeout)
	defer cancel()
	return p.s.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:           k.consumer(),
		Description:       "Flint async poller for " + k.account + "/" + k.name,
		FilterSubject:     k.subject(),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           p.s.cfg.AckWait,
		MaxDeliver:        -1,
		MaxAckPending:     p.s.cfg.MaxAckPendingPerFunction,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 24 * time.Hour,
	})
}

// close stops fetching, waits for running events until ctx ends, then
// abandons the rest (their events are handed back un-acked).
func (p *poller) close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	done := make(chan struct{})
	go func() {
		p.loopsWG.Wait()
		p.flightWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		p.abandon()
		return nil
	case <-ctx.Done():
		p.abandon()
		// Abandoned invocations return promptly once their ctx ends;
		// their events are Nak'ed for redelivery.
		select {
		case <-done:
		case <-time.After(setupTimeout):
		}
		return fmt.Errorf("asyncq: close: %w", ctx.Err())
	}
}
