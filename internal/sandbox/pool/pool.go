// Package pool keeps sandboxes prepared ahead of need, so that a cold
// start costs a claim instead of a whole sandbox creation.
//
// A Pool wraps a sandbox.Driver that has the sandbox.Preparer ability and
// is itself a sandbox.Driver: Create claims a prepared sandbox when one is
// ready and falls back to the driver's Create when none is (or when the
// claim fails for a reason other than the spec or ctx). A prepared sandbox
// is claimed once and never returned: a sandbox a function ran in is never
// reused.
//
// A background goroutine refills the pool, one preparation at a time. How
// many it keeps follows the observed cold-start rate:
//
//	rate    = exponentially weighted Create calls per second (time
//	          constant Config.RateWindow), updated at each Create and
//	          decaying while none come
//	target  = ceil(rate × Config.Lead), at least 1 while the last Create
//	          (or the pool's start) is less than Config.IdleAfter ago, 0
//	          after that; at most Config.MaxSize and at most what fits
//	          in Config.MemoryBudget at the prepared sandboxes' observed
//	          memory use
//
// Prepared sandboxes beyond the target are destroyed (oldest first), as
// are those that die while waiting. Close destroys them all.
//
// Refilling yields to cold starts: preparing a sandbox costs a few
// milliseconds of CPU (and takes kernel locks a starting sandbox needs),
// which on a small host would come out of the cold start that just
// claimed one. So while the pool still holds a prepared sandbox for the
// next cold start, a preparation does not begin while one is under way:
//
//	under way  from Create until the sandbox's runtime has made its
//	           second Runtime API request (its first /next, then the
//	           answer to that invocation) and the request returned, or
//	           Create failed, or Config.StartGrace passed
//
// An empty pool refills at once (the next cold start would find nothing,
// and a whole creation costs it more than sharing the CPU does), so a
// burst of cold starts still gets prepared sandboxes. The refiller waits
// at most about StartGrace in a row: once it has waited that long it
// prepares at its next wake-up regardless (a cold start ending, at most
// StartGrace later). A preparation already running is not interrupted.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flintdev/flint/internal/clock"
	"github.com/flintdev/flint/internal/sandbox"
)

// Defaults of Config.
const (
	DefaultMaxSize      = 8
	DefaultMemoryBudget = 128 << 20
	DefaultLead         = 2 * time.Second
	DefaultRateWindow   = 10 * time.Second
	DefaultIdleAfter    = 10 * time.Minute
	DefaultStartGrace   = 100 * time.Millisecond
	// prepareTimeout bounds one preparation.
	prepareTimeout = 30 * time.Second
	// tick is how often the refiller re-evaluates the target while
	// nothing happens (the rate decays, the pool may go idle).
	tick = time.Second
	// initialMemEstimate is the memory assumed per prepared sandbox
	// until one has been measured.
	initialMemEstimate = 8 << 20
)

// Config configures a Pool. Zero values take the defaults above.
type Config struct {
	// Driver creates the sandboxes; it must implement sandbox.Preparer.
	Driver sandbox.Driver
	// MaxSize bounds the prepared sandboxes kept.
	MaxSize int
	// MemoryBudget bounds the host memory (bytes) they hold together.
	MemoryBudget uint64
	// Lead is how many seconds of cold starts at the observed rate the
	// pool aims to hold.
	Lead time.Duration
	// RateWindow is the time constant of the cold-start rate average.
	RateWindow time.Duration
	// IdleAfter: with no Create for this long the pool empties.
	IdleAfter time.Duration
	// StartGrace bounds how long one cold start holds the refill back,
	// and how long the refiller waits in a row for cold starts to end
	// (see the package doc). Negative: refilling never waits.
	StartGrace time.Duration
	// Clock drives the rate, the idle timeout, StartGrace and the
	// refiller's ticks.
	Clock clock.Clock
	// Logger receives preparation failures (debug: refills).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxSize == 0 {
		c.MaxSize = DefaultMaxSize
	}
	if c.MemoryBudget == 0 {
		c.MemoryBudget = DefaultMemoryBudget
	}
	if c.Lead == 0 {
		c.Lead = DefaultLead
	}
	if c.RateWindow == 0 {
		c.RateWindow = DefaultRateWindow
	}
	if c.IdleAfter == 0 {
		c.IdleAfter = DefaultIdleAfter
	}
	if c.StartGrace == 0 {
		c.StartGrace = DefaultStartGrace
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	c.setDefaults()
	if c.Driver == nil {
		return errors.New("pool: Driver is required")
	}
	if _, ok := c.Driver.(sandbox.Preparer); !ok {
		return fmt.Errorf("pool: the %s driver cannot prepare sandboxes", c.Driver.Name())
	}
	if c.MaxSize < 0 || c.Lead < 0 || c.RateWindow < 0 || c.IdleAfter < 0 {
		return errors.New("pool: MaxSize, Lead, RateWindow and IdleAfter must not be negative")
	}
	return nil
}

// Pool is a sandbox.Driver that claims prepared sandboxes. Its methods are
// safe for concurrent use.
type Pool struct {
	cfg  Config
	prep sandbox.Preparer

	kick chan struct{} // wakes the refiller (buffered, one slot)
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the refiller has returned

	mu        sync.Mutex // guards the fields below
	ready     []sandbox.Prepared
	rate      float64   // Create calls per second, averaged
	rateAt    time.Time // when rate was last brought up to date
	lastUse   time.Time // last Create (or New)
	starting  int       // cold starts under way (see the package doc)
	memEach   uint64    // observed memory per prepared sandbox
	closed    bool
	claims    uint64 // Creates served by a prepared sandbox
	misses    uint64 // Creates that found none ready
	prepared  uint64 // preparations that succeeded
	discarded uint64 // prepared sandboxes destroyed unclaimed
}

var _ sandbox.Driver = (*Pool)(nil)

// New starts a pool (its refiller runs until Close).
func New(cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	now := cfg.Clock.Now()
	p := &Pool{
		cfg: cfg, prep: cfg.Driver.(sandbox.Preparer),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		rateAt: now, lastUse: now, memEach: initialMemEstimate,
	}
	go p.refill()
	return p, nil
}

// Name implements sandbox.Driver: the wrapped driver's name.
func (p *Pool) Name() string { return p.cfg.Driver.Name() }

// Create implements sandbox.Driver: it claims a prepared sandbox if one is
// ready, else creates one with the driver.
func (p *Pool) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	pr := p.take()
	cs := p.begin()
	p.poke() // an empty pool refills at once
	if cs != nil && spec.RuntimeAPI != nil {
		spec.RuntimeAPI = &watchedAPI{h: spec.RuntimeAPI, cs: cs}
	}
	sb, err := p.create(ctx, pr, spec)
	if err != nil {
		cs.end()
	}
	return sb, err
}

func (p *Pool) create(ctx context.Context, pr sandbox.Prepared, spec sandbox.Spec) (sandbox.Sandbox, error) {
	if pr != nil {
		sb, err := pr.Claim(ctx, spec)
		if err == nil || ctx.Err() != nil {
			return sb, err
		}
		// The prepared sandbox is gone with its error; a fresh Create
		// either works or says what is wrong with spec.
		p.cfg.Logger.Debug("claiming a prepared sandbox failed; creating one", "sandbox", spec.ID, "err", err)
	}
	return p.cfg.Driver.Create(ctx, spec)
}

// coldStart is one cold start under way; end (idempotent) marks it over
// and wakes the refiller.
type coldStart struct {
	p     *Pool
	once  sync.Once
	ended chan struct{} // closed by end: stops the StartGrace timer
}

// begin counts a cold start under way until it ends or StartGrace passes.
// It returns nil when refilling never waits (StartGrace < 0).
func (p *Pool) begin() *coldStart {
	if p.cfg.StartGrace < 0 {
		return nil
	}
	cs := &coldStart{p: p, ended: make(chan struct{})}
	p.mu.Lock()
	p.starting++
	p.mu.Unlock()
	t := p.cfg.Clock.NewTimer(p.cfg.StartGrace)
	go func() {
		select {
		case <-t.C():
			cs.end()
		case <-cs.ended:
			t.Stop()
		}
	}()
	return cs
}

// end does nothing on a nil coldStart (StartGrace < 0: never counted).
func (cs *coldStart) end() {
	if cs == nil {
		return
	}
	cs.once.Do(func() {
		close(cs.ended)
		cs.p.mu.Lock()
		cs.p.starting--
		cs.p.mu.Unlock()
		cs.p.poke()
	})
}

// watchedAPI is the Runtime API handler of a sandbox the pool created: it
// ends the sandbox's cold start when the runtime's second request (the
// answer to its first invocation, after its first /next) has been served.
type watchedAPI struct {
	h  http.Handler
	cs *coldStart
	n  atomic.Int32 // requests served, counted up to 2
}

func (w *watchedAPI) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.h.ServeHTTP(rw, r)
	if w.n.Load() < 2 && w.n.Add(1) == 2 {
		w.cs.end()
	}
}

// take records a Create and returns a prepared sandbox, or nil.
func (p *Pool) take() sandbox.Prepared {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Clock.Now()
	p.decayLocked(now)
	p.rate += 1 / p.cfg.RateWindow.Seconds()
	p.lastUse = now
	for len(p.ready) > 0 {
		pr := p.ready[len(p.ready)-1] // the newest
		p.ready = p.ready[:len(p.ready)-1]
		select {
		case <-pr.Done():
			p.discarded++
			go pr.Destroy(context.Background())
			continue
		default:
		}
		p.claims++
		return pr
	}
	p.misses++
	return nil
}

func (p *Pool) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// decayLocked brings rate up to now. p.mu is held.
func (p *Pool) decayLocked(now time.Time) {
	if dt := now.Sub(p.rateAt); dt > 0 {
		p.rate *= math.Exp(-dt.Seconds() / p.cfg.RateWindow.Seconds())
		p.rateAt = now
	}
}

// targetLocked is how many prepared sandboxes the pool should hold now
// (see the package doc). p.mu is held.
func (p *Pool) targetLocked(now time.Time) int {
	if p.closed || p.cfg.MaxSize == 0 || now.Sub(p.lastUse) >= p.cfg.IdleAfter {
		return 0
	}
	p.decayLocked(now)
	n := max(1, int(math.Ceil(p.rate*p.cfg.Lead.Seconds()-1e-9)))
	n = min(n, p.cfg.MaxSize)
	if fit := int(p.cfg.MemoryBudget / max(p.memEach, 1)); n > fit {
		n = fit
	}
	return n
}

// refill keeps the pool at its target until Close.
func (p *Pool) refill() {
	defer close(p.done)
	t := p.cfg.Clock.NewTimer(tick)
	defer t.Stop()
	failures := 0
	var heldSince time.Time // when the refill began to wait for cold starts
	for {
		// Armed before reading the clock: time that passes after the
		// reading fires it, and the next round sees it.
		t.Reset(tick)
		p.mu.Lock()
		now := p.cfg.Clock.Now()
		target := p.targetLocked(now)
		var extra []sandbox.Prepared
		// Drop the dead, then the oldest beyond the target.
		live := p.ready[:0]
		for _, pr := range p.ready {
			select {
			case <-pr.Done():
				extra = append(extra, pr)
			default:
				live = append(live, pr)
			}
		}
		p.ready = live
		if n := len(p.ready) - target; n > 0 {
			extra = append(extra, p.ready[:n]...)
			p.ready = append(p.ready[:0:0], p.ready[n:]...)
		}
		p.discarded += uint64(len(extra))
		need := len(p.ready) < target
		held := false
		if need && p.starting > 0 && len(p.ready) > 0 {
			if heldSince.IsZero() {
				heldSince = now
			}
			held = now.Sub(heldSince) < p.cfg.StartGrace
		}
		p.mu.Unlock()
		for _, pr := range extra {
			p.destroy(pr)
		}
		if need && !held && failures < 3 {
			heldSince = time.Time{}
			if p.prepareOne() {
				failures = 0
			} else {
				failures++
			}
			continue
		}
		// Idle (or held): wait for a Create or the end of a cold start,
		// a tick (the rate decays; after failures, a retry) or Close.
		select {
		case <-p.stop:
			return
		case <-p.kick:
		case <-t.C():
			failures = 0
		}
	}
}

// prepareOne prepares a sandbox and adds it to the pool; it reports
// success.
func (p *Pool) prepareOne() bool {
	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	pr, err := p.prep.Prepare(ctx)
	cancel()
	if err != nil {
		select {
		case <-p.stop:
		default:
			p.cfg.Logger.Warn("preparing a sandbox for the pool", "err", err)
		}
		return false
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.destroy(pr)
		return true
	}
	p.ready = append(p.ready, pr)
	p.prepared++
	if m := pr.MemoryBytes(); m > 0 {
		// Follow the measured use, smoothed.
		p.memEach = (p.memEach*3 + m) / 4
	}
	p.mu.Unlock()
	return true
}

func (p *Pool) destroy(pr sandbox.Prepared) {
	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	defer cancel()
	if err := pr.Destroy(ctx); err != nil {
		p.cfg.Logger.Warn("destroying a prepared sandbox", "err", err)
	}
}

// Stats are a pool's counters.
type Stats struct {
	// Ready is how many prepared sandboxes wait now; Target how many the
	// pool aims for.
	Ready, Target int
	// Claims counts Creates served by a prepared sandbox, Misses those
	// that found none, Prepared the preparations that succeeded,
	// Discarded the prepared sandboxes destroyed unclaimed (beyond the
	// target, dead, or at Close).
	Claims, Misses, Prepared, Discarded uint64
	// MemoryEach is the memory one prepared sandbox is estimated to hold.
	MemoryEach uint64
}

// Stats reports the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		Ready: len(p.ready), Target: p.targetLocked(p.cfg.Clock.Now()),
		Claims: p.claims, Misses: p.misses, Prepared: p.prepared, Discarded: p.discarded,
		MemoryEach: p.memEach,
	}
}

// Close stops refilling and destroys every prepared sandbox (a preparation
// under way is cancelled). Sandboxes already claimed are not the pool's:
// their owners destroy them. Close the pool before the driver.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	select {
	case <-p.done:
	case <-ctx.Done():
		return fmt.Errorf("pool: close: %w", ctx.Err())
	}
	p.mu.Lock()
	ready := p.ready
	p.ready = nil
	p.discarded += uint64(len(ready))
	p.mu.Unlock()
	var errs []error
	for _, pr := range ready {
		if err := pr.Destroy(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
