package workermanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/placement"
)

// Sandbox state machine, as the manager tracks it (one entry per sandbox):
//
//	          Invoke finds no idle sandbox
//	                     │
//	                     ▼            Place / Hosts / CreateSandbox fails
//	                 creating ──────────────────────────────► (reservation released,
//	                     │ created (cold start)                 entry forgotten)
//	                     ▼
//	      claim (MRU) ┌► busy ──invocation ends──┐
//	                  │   │                      │ healthy, not retired,
//	                  │   │                      │ manager not closed
//	                idle ◄┼──────────────────────┘
//	                  │   │ unhealthy, Invoke error, retired, or closed
//	                  │   ▼
//	                  └► destroying ──Destroy, then Release──► destroyed
//	     keep-alive expired,
//	     Retire, or Close
//
// Busy and creating sandboxes are never destroyed by Retire, Close or the
// reaper; they are flagged (retired) or see the closed manager when their
// invocation ends, and destroy themselves then. Only the goroutine running
// an invocation touches a busy sandbox; only the goroutine that moved an
// entry to destroying destroys it. So every sandbox is destroyed, and its
// reservation released, exactly once.
//
// Provisioned sandboxes (provisioned.go) follow the same machine; they are
// created by the provisioner instead of an invocation (creating → idle,
// without a first invocation), and the keep-alive reaper skips them.
//
// Locking: Manager.mu guards Manager.pools, closed, active, quiesced,
// provisions and the counters, every pool's fields, every provision's
// fields, and every entry's state, retired, provisioned, idleSince and
// uses. An entry's sb and res are written once, under mu,
// before the entry becomes reachable from another goroutine (busy → idle).
// mu is never held while calling Placement, Hosts, or a Host or Sandbox
// method, and no other lock is taken while holding it (the limiter and the
// scale-out bucket have their own locks, taken without mu).

type state int

const (
	stateCreating state = iota
	stateBusy
	stateIdle
	stateDestroying
	stateDestroyed
)

func (s state) String() string {
	return [...]string{"creating", "busy", "idle", "destroying", "destroyed"}[s]
}

// entry is one sandbox the manager knows.
type entry struct {
	pool *pool
	sb   Sandbox               // nil while creating
	res  placement.Reservation // zero while creating

	state   state
	retired bool // destroy when the invocation ends
	// provisioned marks a sandbox held for provisioned concurrency: the
	// reaper leaves it alone, and when it dies it is replaced.
	provisioned bool
	idleSince   time.Time // when it last became idle
	uses        int       // invocations finished
	// slots is how many invocations the sandbox serves at once (1, or the
	// function's PerExecutionEnvironmentMaxConcurrency); inflight counts
	// those running (busy while > 0). A multi-slot entry with a free slot
	// is in pool.open (inOpen) while creating or busy; sick (an invocation
	// found it unhealthy) keeps it out: it is destroyed when the last one
	// ends.
	slots, inflight int
	inOpen, sick    bool
	// ready, for a multi-slot entry created by an invocation, is closed
	// when its creation ended (others may join it meanwhile); createErr
	// is then set if it failed. Both are written once, under mu.
	ready     chan struct{}
	createErr error
	// placed is how long placement took; written with sb and res.
	placed time.Duration
}

// pool holds the sandboxes of one SandboxKey.
type pool struct {
	key, account, name, version string
	// idle is ordered by the time each sandbox became idle: the last one is
	// the most recently used, which the next invocation claims.
	idle []*entry
	// busy holds the creating and busy sandboxes.
	busy map[*entry]struct{}
	// open holds the creating and busy multi-slot sandboxes with a free
	// slot, which an invocation joins before claiming an idle one.
	open []*entry
}

// removeOpen takes e out of p.open (mu held).
func (p *pool) removeOpen(e *entry) {
	if !e.inOpen {
		return
	}
	e.inOpen = false
	for i, o := range p.open {
		if o == e {
			last := len(p.open) - 1
			p.open[i] = p.open[last]
			p.open[last] = nil
			p.open = p.open[:last]
			return
		}
	}
}

// addOpen puts e in p.open (mu held).
func (p *pool) addOpen(e *entry) {
	if !e.inOpen {
		e.inOpen = true
		p.open = append(p.open, e)
	}
}

// Manager is the Worker Manager. Create it with New; all methods are safe
// for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	pools map[string]*pool // by SandboxKey; empty pools are removed
	// closed is set by Close; no new invocation starts after it.
	closed bool
	// active counts invocation goroutines (see Invoke); quiesced, when not
	// nil, is closed when active drops to 0.
	active   int
	quiesced chan struct{}

	invocations, coldStarts, destroyed uint64

	// provisions holds the provisioned concurrency configurations by
	// SandboxKey (provisioned.go).
	provisions map[string]*provision

	runners *runners // the goroutines invocations run on

	limiter *concurrency.Limiter // account and reserved concurrency
	scale   *concurrency.Bucket  // new sandboxes per function

	// bg counts background goroutines (provisioning); lifetime is
	// canceled by Close and bounds their work.
	bg       sync.WaitGroup
	lifetime context.Context
	stop     context.CancelFunc

	stopReaper chan struct{} // closed by Close
	reaperDone chan struct{} // closed when the reaper has exited
	closeOnce  sync.Once
}

// New returns a running Manager; call Close to stop it.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	limiter, err := concurrency.NewLimiter(cfg.AccountConcurrency)
	if err != nil {
		return nil, fmt.Errorf("workermanager: %w", err)
	}
	scale, err := concurrency.NewBucket(cfg.ScaleOutRate, cfg.ScaleOutBurst, cfg.Clock.Now)
	if err != nil {
		return nil, fmt.Errorf("workermanager: %w", err)
	}
	m := &Manager{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "workermanager"),
		pools:      make(map[string]*pool),
		provisions: make(map[string]*provision),
		runners:    newRunners(),
		limiter:    limiter,
		scale:      scale,
		stopReaper: make(chan struct{}),
		reaperDone: make(chan struct{}),
	}
	m.lifetime, m.stop = context.WithCancel(context.Background())
	go m.reapLoop()
	return m, nil
}

type outcome struct {
	res invocation.Result
	err error
}

// Invoke runs req in a sandbox for fn: a warm idle one of fn.SandboxKey()
// (the most recently used) when there is one, else a new one placed by the
// Placement Service (Result.ColdStart is then true).
//
// ctx covers the caller's wait only. Once accepted, an invocation runs to
// its end in its own goroutine with a context that is not canceled with
// ctx (the worker enforces the function timeout); if ctx ends first, Invoke
// returns ctx's error at once and the sandbox goes back to the pool when the
// invocation finishes.
//
// Concurrency: before anything else the invocation is admitted by the
// account and reserved concurrency limits (SetReservedConcurrency), without
// waiting: over a limit, Invoke returns at once a TooManyRequestsException
// with Reason ReservedFunctionConcurrentInvocationLimitExceeded or
// ConcurrentInvocationLimitExceeded. The slot is held until the invocation
// ends (not when the caller gives up). A cold start over the function's
// scale-out rate is refused likewise (Reason
// FunctionInvocationRateLimitExceeded).
//
// Errors: placement failures are wrapped as is (no capacity is a
// lambdaerr TooManyRequestsException); creation failures and
// infrastructure errors of Sandbox.Invoke are wrapped with the function
// name; ErrClosed after Close. Function errors are not errors: they are in
// Result.FunctionError.
func (m *Manager) Invoke(ctx context.Context, fn *lambdafn.Function, req invocation.Request) (invocation.Result, error) {
	return m.invoke(ctx, fn, req, nil)
}

// InvokeStream is Invoke for a caller that takes the response as a stream
// (InvokeWithResponseStream, streaming function URLs): a successful
// response's body goes to stream as the function produces it, through
// sandboxes that are Streamers, and Result.Payload stays empty. stream is
// not used after InvokeStream returns.
func (m *Manager) InvokeStream(ctx context.Context, fn *lambdafn.Function, req invocation.Request, stream invocation.Stream) (invocation.Result, error) {
	if stream == nil {
		return invocation.Result{}, fmt.Errorf("workermanager: invoke %s: nil stream", req.RequestID)
	}
	g := &closableStream{s: stream}
	defer g.close()
	return m.invoke(ctx, fn, req, g)
}

func (m *Manager) invoke(ctx context.Context, fn *lambdafn.Function, req invocation.Request, stream invocation.Stream) (invocation.Result, error) {
	if fn == nil {
		return invocation.Result{}, fmt.Errorf("workermanager: invoke without a function")
	}
	if err := ctx.Err(); err != nil {
		return invocation.Result{}, fmt.Errorf("invoke %s (request %s): %w", fn.Name, req.RequestID, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return invocation.Result{}, fmt.Errorf("invoke %s: %w", fn.Name, ErrClosed)
	}
	m.mu.Unlock()
	release, err := m.limiter.Acquire(fn.Account, fn.Name)
	if err != nil {
		return invocation.Result{}, fmt.Errorf("invoke %s (request %s): %w", fn.Name, req.RequestID, err)
	}
	if release, err = m.leaseReserved(ctx, fn, release); err != nil {
		return invocation.Result{}, fmt.Errorf("invoke %s (request %s): %w", fn.Name, req.RequestID, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		release()
		return invocation.Result{}, fmt.Errorf("invoke %s: %w", fn.Name, ErrClosed)
	}
	m.active++
	m.mu.Unlock()

	done := make(chan outcome, 1) // buffered: the goroutine never blocks on an absent caller
	runCtx := context.WithoutCancel(ctx)
	m.runners.run(func() {
		res, err := m.run(runCtx, fn, req, stream)
		release()
		m.endActive() // before the send: the invocation is over for Close
		done <- outcome{res, err}
	})
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
		return invocation.Result{}, fmt.Errorf("invoke %s (request %s): caller gave up, invocation continues: %w",
			fn.Name, req.RequestID, context.Cause(ctx))
	}
}

// endActive marks the end of one invocation goroutine.
func (m *Manager) endActive() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.active--
	if m.active == 0 && m.quiesced != nil {
		close(m.quiesced)
		m.quiesced = nil
	}
}

// maxDeliveries bounds the sandboxes one invocation is tried on when the
// event did not reach the function: the sandbox's runtime had exited
// (invocation.ErrNotDelivered) or its host could not be reached
// (ErrHostUnreachable).
const maxDeliveries = 3

// run acquires a sandbox, invokes it, and hands it back. When the event
// did not reach the function — the sandbox's runtime had exited, e.g.
// after a crash in the previous invocation, or its host is gone — the
// invocation runs on another sandbox (a fresh one unless a healthy one is
// idle), as Lambda starts a new execution environment: the caller never
// sees the dead runtime (nothing was streamed to it either).
func (m *Manager) run(ctx context.Context, fn *lambdafn.Function, req invocation.Request, stream invocation.Stream) (invocation.Result, error) {
	log := &invocationLog{base: m.log, fn: fn, requestID: req.RequestID}
	for attempt := 1; ; attempt++ {
		res, err := m.runOnce(ctx, fn, req, stream, log)
		retry := errors.Is(err, invocation.ErrNotDelivered) || errors.Is(err, ErrHostUnreachable)
		if err == nil || !retry || attempt == maxDeliveries {
			return res, err
		}
		log.get().Info("event not delivered, trying another sandbox", "attempt", attempt, "err", err)
	}
}

// invocationLog is the logger of one invocation (function, version,
// request ID), built the first time something is logged: a warm
// invocation usually logs nothing, and slog's With formats its attributes
// at once. Used by the invocation's goroutine only.
type invocationLog struct {
	base      *slog.Logger
	fn        *lambdafn.Function
	requestID string
	l         *slog.Logger
}

func (l *invocationLog) get() *slog.Logger {
	if l.l == nil {
		l.l = l.base.With("function", l.fn.Name, "version", l.fn.Version, "requestId", l.requestID)
	}
	return l.l
}

// runOnce runs the invocation on one sandbox.
func (m *Manager) runOnce(ctx context.Context, fn *lambdafn.Function, req invocation.Request, stream invocation.Stream, log *invocationLog) (invocation.Result, error) {
	e, cold, err := m.acquire(ctx, fn, log)
	if err != nil {
		return invocation.Result{}, err
	}

	ictx, cancel := context.WithTimeout(ctx, m.backstop(fn))
	var res invocation.Result
	if st, ok := e.sb.(Streamer); ok && stream != nil {
		res, err = st.InvokeStream(ictx, req, stream)
	} else {
		res, err = e.sb.Invoke(ictx, req)
		if err == nil && stream != nil && res.FunctionError == "" {
			// A sandbox that cannot stream: its whole answer at once.
			if serr := stream.Start("application/json"); serr == nil {
				_, _ = stream.Write(res.Payload)
			}
			res.Payload = nil
		}
	}
	cancel()
	healthy := err == nil && e.sb.Healthy()
	if err != nil {
		err = fmt.Errorf("invoke %s in sandbox %s: %w", fn.Name, e.sb.ID(), err)
		log.get().Warn("sandbox invoke failed", "sandbox", e.sb.ID(), "err", err)
	}
	m.finish(e, healthy, log)
	if err != nil {
		if errors.Is(err, ErrHostUnreachable) {
			// Its other idle sandboxes are as unreachable: forget them
			// so the next attempt gets a sandbox elsewhere.
			m.hostUnreachable(e.res.HostID, err)
			m.ForgetHost(ctx, e.res.HostID)
		}
		return invocation.Result{}, err
	}
	res.ColdStart = cold
	if res.SandboxID == "" {
		res.SandboxID = e.sb.ID()
	}
	res.Host = e.res.HostID
	if cold && res.Cold != nil {
		res.Cold.Placement = e.placed
	}
	return res, nil
}

// backstop is the deadline of one Sandbox.Invoke call.
func (m *Manager) backstop(fn *lambdafn.Function) time.Duration {
	t := time.Duration(fn.Timeout) * time.Second
	if t <= 0 {
		t = maxFunctionTimeout
	}
	return t + m.cfg.InvokeGrace
}

// acquire returns a busy sandbox for fn, claiming an idle one or creating
// one; cold reports a creation.
func (m *Manager) acquire(ctx context.Context, fn *lambdafn.Function, log *invocationLog) (e *entry, cold bool, err error) {
	key := fn.SandboxKey()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, false, fmt.Errorf("invoke %s: %w", fn.Name, ErrClosed)
	}
	p := m.poolLocked(key, fn)
	for allowed := false; ; {
		if e, ready := m.takeLocked(p); e != nil {
			m.mu.Unlock()
			if ready != nil {
				<-ready // creation is bounded by CreateTimeout
				if e.createErr != nil {
					return nil, false, e.createErr
				}
			}
			return e, false, nil
		}
		if allowed {
			break
		}
		m.dropIfEmptyLocked(p)
		m.mu.Unlock()
		if !m.scale.Allow(fn.Account + "/" + fn.Name) {
			return nil, false, fmt.Errorf("create sandbox for %s: scale-out rate exceeded: %w",
				fn.Name, concurrency.Throttled(concurrency.ReasonScaleRate))
		}
		allowed = true
		// Look again: while the lock was free, a sandbox may have turned
		// idle or a multi-slot one started that has a free slot; racing
		// invocations must not each create one.
		m.mu.Lock()
		p = m.poolLocked(key, fn)
	}
	e = &entry{pool: p, state: stateCreating, slots: fn.MaxConcurrency(), inflight: 1}
	if e.slots > 1 {
		e.ready = make(chan struct{})
		p.addOpen(e)
	}
	p.busy[e] = struct{}{}
	m.mu.Unlock()

	start := m.cfg.Clock.Now()
	sb, res, placed, err := m.placeAndCreate(ctx, fn)
	if err != nil {
		m.forget(e, err)
		return nil, false, err
	}

	m.mu.Lock()
	e.sb, e.res, e.placed = sb, res, placed
	e.state = stateBusy
	m.invocations++
	m.coldStarts++
	retired := e.retired
	if e.ready != nil {
		close(e.ready)
	}
	m.mu.Unlock()
	log.get().Info("sandbox created", "sandbox", sb.ID(), "host", res.HostID,
		"took", m.cfg.Clock.Now().Sub(start), "retired", retired)
	return e, true, nil
}

// poolLocked returns the pool of fn's sandboxes (key is its SandboxKey),
// making it if there is none (dropIfEmptyLocked may have removed it while
// the lock was free). m.mu is held.
func (m *Manager) poolLocked(key string, fn *lambdafn.Function) *pool {
	p := m.pools[key]
	if p == nil {
		p = newPool(fn)
		m.pools[key] = p
	}
	return p
}

// takeLocked takes a slot of p's sandboxes without creating one: a free
// slot of a multi-slot sandbox first (even one still being created: then
// ready is its creation's, to wait for outside the lock), else an idle
// sandbox. It returns nil when there is neither. m.mu is held.
func (m *Manager) takeLocked(p *pool) (e *entry, ready chan struct{}) {
	for len(p.open) > 0 {
		e = p.open[len(p.open)-1]
		if e.sick || e.retired {
			p.removeOpen(e)
			continue
		}
		e.inflight++
		if e.inflight >= e.slots {
			p.removeOpen(e)
		}
		m.invocations++
		return e, e.ready
	}
	if n := len(p.idle); n > 0 {
		e = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		e.state = stateBusy
		e.inflight = 1
		if e.slots > 1 {
			p.addOpen(e)
		}
		p.busy[e] = struct{}{}
		m.invocations++
		return e, nil
	}
	return nil, nil
}

// placeAndCreate places a sandbox for fn and creates it on the chosen
// host. A host that cannot be reached is dropped from placement, and one
// that turns out full is skipped: the sandbox is placed again elsewhere, up
// to maxHostAttempts hosts.
func (m *Manager) placeAndCreate(ctx context.Context, fn *lambdafn.Function) (_ Sandbox, _ placement.Reservation, placed time.Duration, _ error) {
	var exclude []string
	for attempt := 1; ; attempt++ {
		start := m.cfg.Clock.Now()
		res, err := m.cfg.Placement.Place(ctx, placement.Request{
			MemoryMB:   fn.MemorySize,
			CodeDigest: fn.CodeDigest,
			SandboxKey: fn.SandboxKey(),
			Exclude:    exclude,
		})
		placed += m.cfg.Clock.Now().Sub(start)
		if err != nil {
			return nil, res, placed, fmt.Errorf("place sandbox for %s: %w", fn.Name, err)
		}
		host, ok := m.cfg.Hosts(res.HostID)
		if !ok {
			m.cfg.Placement.Release(res)
			return nil, res, placed, fmt.Errorf("create sandbox for %s: placed on unknown host %s", fn.Name, res.HostID)
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.CreateTimeout)
		sb, err := host.CreateSandbox(cctx, fn)
		cancel()
		if err == nil {
			return sb, res, placed, nil
		}
		m.cfg.Placement.Release(res)
		err = fmt.Errorf("create sandbox for %s on host %s: %w", fn.Name, res.HostID, err)
		unreachable := errors.Is(err, ErrHostUnreachable)
		if unreachable {
			m.hostUnreachable(res.HostID, err)
		}
		if !(unreachable || errors.Is(err, ErrHostFull)) || attempt == maxHostAttempts {
			return nil, res, placed, err
		}
		exclude = append(exclude, res.HostID)
	}
}

// hostUnreachable drops a host that could not be reached from placement
// (when the Placer can), ahead of its missing heartbeats.
func (m *Manager) hostUnreachable(hostID string, err error) {
	m.log.Warn("worker host unreachable", "host", hostID, "err", err)
	if d, ok := m.cfg.Placement.(interface{ Drop(hostID string) }); ok {
		d.Drop(hostID)
	}
}

// ForgetHost forgets the idle sandboxes on a host that left the cluster
// (it stopped heartbeating): they are destroyed as far as the host can
// still be told, and their reservations released. Busy ones end with their
// invocation (whose call to the lost host fails) and are not reused.
func (m *Manager) ForgetHost(ctx context.Context, hostID string) {
	var victims []*entry
	reprovision := map[string]bool{} // keys that lost provisioned sandboxes
	m.mu.Lock()
	for _, p := range m.pools {
		kept := p.idle[:0]
		for _, e := range p.idle {
			if e.res.HostID == hostID {
				e.state = stateDestroying
				victims = append(victims, e)
				if e.provisioned {
					reprovision[p.key] = true
				}
			} else {
				kept = append(kept, e)
			}
		}
		clear(p.idle[len(kept):])
		p.idle = kept
		m.dropIfEmptyLocked(p)
	}
	m.mu.Unlock()
	for _, e := range victims {
		_ = m.destroy(ctx, e, "host lost")
	}
	if len(victims) > 0 {
		m.log.Warn("forgot the sandboxes of a lost host", "host", hostID, "sandboxes", len(victims))
	}
	// Provisioned sandboxes lost with the host are made again elsewhere.
	for key := range reprovision {
		m.reprovision(key)
	}
}

func newPool(fn *lambdafn.Function) *pool {
	return &pool{key: fn.SandboxKey(), account: fn.Account, name: fn.Name, version: fn.Version,
		busy: make(map[*entry]struct{})}
}

// forget drops a creating entry whose creation failed with err; the
// invocations that joined it (multi-slot) fail with err too.
func (m *Manager) forget(e *entry, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(e.pool.busy, e)
	e.pool.removeOpen(e)
	e.state = stateDestroyed
	if e.ready != nil {
		e.createErr = err
		close(e.ready)
	}
	m.dropIfEmptyLocked(e.pool)
}

// finish ends a busy sandbox's invocation: back to idle, or destroyed.
func (m *Manager) finish(e *entry, healthy bool, log *invocationLog) {
	m.mu.Lock()
	p := e.pool
	e.uses++
	e.inflight--
	if e.slots > 1 {
		// A multi-slot sandbox: it stays busy while invocations run in
		// it, and takes new ones while healthy.
		e.sick = e.sick || !healthy
		if e.sick || e.retired || m.closed {
			p.removeOpen(e)
		} else if e.inflight > 0 {
			p.addOpen(e)
		}
		if e.inflight > 0 {
			m.mu.Unlock()
			return
		}
		p.removeOpen(e)
		healthy = !e.sick
	}
	delete(p.busy, e)
	if healthy && !e.retired && !m.closed {
		e.state = stateIdle
		e.idleSince = m.cfg.Clock.Now()
		p.idle = append(p.idle, e)
		m.mu.Unlock()
		return
	}
	why := "unhealthy"
	switch {
	case e.retired:
		why = "retired"
	case m.closed:
		why = "manager closed"
	}
	e.state = stateDestroying
	replace := e.provisioned && !e.retired && !m.closed
	m.dropIfEmptyLocked(p)
	m.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.DestroyTimeout)
	defer cancel()
	if err := m.destroy(ctx, e, why); err != nil {
		log.get().Warn("destroy sandbox", "err", err)
	}
	if replace {
		m.reprovision(p.key)
	}
}

// destroy destroys an entry in state destroying and releases its
// reservation, even when Destroy fails (the host's own cleanup is then the
// last resort; keeping the reservation would leak the capacity forever).
func (m *Manager) destroy(ctx context.Context, e *entry, why string) error {
	err := e.sb.Destroy(ctx)
	m.cfg.Placement.Release(e.res)
	m.mu.Lock()
	e.state = stateDestroyed
	m.destroyed++
	uses := e.uses
	m.mu.Unlock()
	m.log.Info("sandbox destroyed", "sandbox", e.sb.ID(), "key", e.pool.key, "host", e.res.HostID,
		"why", why, "invocations", uses, "err", err)
	if err != nil {
		return fmt.Errorf("destroy sandbox %s of %s: %w", e.sb.ID(), e.pool.key, err)
	}
	return nil
}

// dropIfEmptyLocked removes p from the pool map when it holds no sandbox.
// m.mu must be held.
func (m *Manager) dropIfEmptyLocked(p *pool) {
	if len(p.idle) == 0 && len(p.busy) == 0 && m.pools[p.key] == p {
		delete(m.pools, p.key)
	}
}

// closableStream guards a caller's Stream: after close (when InvokeStream
// returns, even while the invocation goes on without its caller) every call
// fails instead of reaching the caller's writer.
type closableStream struct {
	mu     sync.Mutex
	s      invocation.Stream // guarded by mu
	closed bool              // guarded by mu
}

var errStreamClosed = errors.New("workermanager: the caller of this streamed invocation has gone")

func (c *closableStream) Start(contentType string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errStreamClosed
	}
	return c.s.Start(contentType)
}

func (c *closableStream) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, errStreamClosed
	}
	return c.s.Write(p)
}

func (c *closableStream) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}
