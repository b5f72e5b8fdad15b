package workermanager

import (
	"context"
	"fmt"

	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/placement"
)

// Provisioned concurrency: for a function version the manager keeps
// Requested sandboxes created and initialised ahead of invocations. They
// live in the version's pool like any other sandbox (an invocation claims
// one as a warm start) but carry the provisioned flag: the keep-alive
// reaper skips them, and one that dies (unhealthy, Invoke error) is
// replaced. The provisioner creates at most ProvisionParallelism at once
// per configuration, each: Place → CreateSandbox → Init (when the sandbox
// is an Initializer) → idle.
//
//	SetProvisionedConcurrency ──► IN_PROGRESS ──all allocated──► READY
//	                                   │  ▲                        │ one dies
//	           a creation or Init fails│  └────────────────────────┘
//	                                   ▼
//	                                FAILED (StatusReason; Set again to retry)

// provision is one configuration; guarded by Manager.mu.
type provision struct {
	fn        lambdafn.Function // the version provisioned (a copy)
	requested int
	creating  int    // creations in flight
	failed    string // the reason of the last failure, "" while none
}

// SetProvisionedConcurrency asks for n (> 0) initialised sandboxes of the
// function version fn (replacing an earlier request for the same
// SandboxKey) and returns at once; creation runs in the background,
// bounded by Close. Lowering n hands the extra sandboxes back to the
// ordinary keep-alive. Use ProvisionedConcurrency for progress.
func (m *Manager) SetProvisionedConcurrency(fn *lambdafn.Function, n int) error {
	if fn == nil || n <= 0 {
		return fmt.Errorf("workermanager: provisioned concurrency needs a function and n > 0")
	}
	key := fn.SandboxKey()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return fmt.Errorf("provision %s: %w", fn.Name, ErrClosed)
	}
	pv := m.provisions[key]
	if pv == nil {
		pv = &provision{fn: *fn}
		m.provisions[key] = pv
	}
	pv.requested, pv.failed = n, ""
	if p := m.pools[key]; p != nil {
		extra := m.countProvisionedLocked(p, true) - n
		now := m.cfg.Clock.Now()
		for _, e := range p.idle {
			if extra > 0 && e.provisioned {
				e.provisioned, e.idleSince = false, now
				extra--
			}
		}
		for e := range p.busy {
			if extra > 0 && e.provisioned {
				e.provisioned = false
				extra--
			}
		}
	}
	m.mu.Unlock()
	m.log.Info("provisioned concurrency set", "key", key, "requested", n)
	m.reprovision(key)
	return nil
}

// ClearProvisionedConcurrency drops the request for fn's version: its
// sandboxes become ordinary ones, reaped after KeepAlive from now.
func (m *Manager) ClearProvisionedConcurrency(fn *lambdafn.Function) {
	key := fn.SandboxKey()
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.provisions, key)
	p := m.pools[key]
	if p == nil {
		return
	}
	now := m.cfg.Clock.Now()
	for _, e := range p.idle {
		if e.provisioned {
			e.provisioned, e.idleSince = false, now
		}
	}
	for e := range p.busy {
		e.provisioned = false
	}
}

// ProvisionedConcurrency reports the state of fn's version's provisioned
// concurrency; ok is false when none was requested (or it was retired).
func (m *Manager) ProvisionedConcurrency(fn *lambdafn.Function) (st concurrency.ProvisionedStatus, ok bool) {
	key := fn.SandboxKey()
	m.mu.Lock()
	defer m.mu.Unlock()
	pv := m.provisions[key]
	if pv == nil {
		return st, false
	}
	st.Requested = pv.requested
	if p := m.pools[key]; p != nil {
		st.Allocated = m.countProvisionedLocked(p, false)
		for _, e := range p.idle {
			if e.provisioned {
				st.Available++
			}
		}
	}
	switch {
	case pv.failed != "":
		st.Status, st.StatusReason = concurrency.StatusFailed, pv.failed
	case st.Allocated >= pv.requested:
		st.Status = concurrency.StatusReady
	default:
		st.Status = concurrency.StatusInProgress
	}
	return st, true
}

// countProvisionedLocked counts p's provisioned sandboxes, the ones still
// being created included or not. m.mu must be held.
func (m *Manager) countProvisionedLocked(p *pool, withCreating bool) int {
	n := 0
	for _, e := range p.idle {
		if e.provisioned {
			n++
		}
	}
	for e := range p.busy {
		if e.provisioned && (withCreating || e.state != stateCreating) {
			n++
		}
	}
	return n
}

// reprovision starts the creations a configuration is missing, up to
// ProvisionParallelism in flight.
func (m *Manager) reprovision(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pv := m.provisions[key]
	if pv == nil || m.closed || pv.failed != "" {
		return
	}
	p := m.pools[key]
	if p == nil {
		p = newPool(&pv.fn)
		m.pools[key] = p
	}
	missing := pv.requested - m.countProvisionedLocked(p, true)
	start := min(missing, m.cfg.ProvisionParallelism-pv.creating)
	for range max(start, 0) {
		e := &entry{pool: p, state: stateCreating, provisioned: true, slots: pv.fn.MaxConcurrency()}
		p.busy[e] = struct{}{}
		pv.creating++
		m.bg.Add(1)
		go m.provisionOne(pv, e)
	}
	m.dropIfEmptyLocked(p)
}

// provisionOne creates and initialises one provisioned sandbox.
func (m *Manager) provisionOne(pv *provision, e *entry) {
	defer m.bg.Done()
	fn := &pv.fn
	log := m.log.With("function", fn.Name, "version", fn.Version, "key", e.pool.key)
	sb, res, err := m.createInitialised(fn)
	if err != nil {
		log.Warn("provisioning a sandbox failed", "err", err)
		m.mu.Lock()
		pv.creating--
		if m.provisions[e.pool.key] == pv {
			pv.failed = err.Error()
		}
		m.mu.Unlock()
		m.forget(e, err)
		return
	}

	m.mu.Lock()
	pv.creating--
	e.sb, e.res = sb, res
	if e.retired || m.closed {
		e.state = stateDestroying
		delete(e.pool.busy, e)
		m.dropIfEmptyLocked(e.pool)
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.DestroyTimeout)
		defer cancel()
		if err := m.destroy(ctx, e, "retired while provisioning"); err != nil {
			log.Warn("destroy sandbox", "err", err)
		}
		return
	}
	if m.provisions[e.pool.key] != pv {
		e.provisioned = false // cleared meanwhile: an ordinary idle sandbox
	}
	delete(e.pool.busy, e)
	e.state = stateIdle
	e.idleSince = m.cfg.Clock.Now()
	e.pool.idle = append(e.pool.idle, e)
	m.mu.Unlock()
	log.Info("provisioned sandbox ready", "sandbox", sb.ID(), "host", res.HostID)
	m.reprovision(e.pool.key)
}

// createInitialised places, creates and (when it can) initialises a
// sandbox for fn, bounded by the manager's lifetime and CreateTimeout.
// On error nothing is left behind.
func (m *Manager) createInitialised(fn *lambdafn.Function) (Sandbox, placement.Reservation, error) {
	ctx, cancel := context.WithTimeout(m.lifetime, m.cfg.CreateTimeout)
	defer cancel()
	sb, res, _, err := m.placeAndCreate(ctx, fn)
	if err != nil {
		return nil, res, fmt.Errorf("provisioned sandbox for %s: %w", fn.QualifiedARN(), err)
	}
	if in, ok := sb.(Initializer); ok {
		if err := in.Init(ctx); err != nil {
			dctx, dcancel := context.WithTimeout(context.Background(), m.cfg.DestroyTimeout)
			_ = sb.Destroy(dctx)
			dcancel()
			m.cfg.Placement.Release(res)
			return nil, res, fmt.Errorf("init provisioned sandbox %s for %s: %w", sb.ID(), fn.QualifiedARN(), err)
		}
	}
	return sb, res, nil
}
