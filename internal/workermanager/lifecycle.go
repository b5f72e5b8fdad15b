package workermanager

import (
	"context"
	"errors"
	"fmt"
)

// reapLoop destroys expired idle sandboxes every ReapInterval (by the
// configured Clock) until Close. Its timer is armed only while it waits.
func (m *Manager) reapLoop() {
	defer close(m.reaperDone)
	t := m.cfg.Clock.NewTimer(m.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stopReaper:
			return
		case <-t.C():
			m.reap()
			t.Reset(m.cfg.ReapInterval)
		}
	}
}

// reap destroys the sandboxes idle for KeepAlive or longer (by the
// configured Clock) and releases their reservations. Provisioned sandboxes
// stay.
func (m *Manager) reap() {
	now := m.cfg.Clock.Now()
	var victims []*entry
	m.mu.Lock()
	for _, p := range m.pools {
		kept := p.idle[:0]
		for _, e := range p.idle {
			if !e.provisioned && now.Sub(e.idleSince) >= m.cfg.KeepAlive {
				e.state = stateDestroying
				victims = append(victims, e)
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
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.DestroyTimeout)
		if err := m.destroy(ctx, e, "keep-alive expired"); err != nil {
			m.log.Warn("reap sandbox", "err", err)
		}
		cancel()
	}
}

// Retire destroys every sandbox of the function account/name, whatever its
// version or revision: idle ones now (Destroy gets ctx), busy and creating
// ones when their invocation ends (they never return to idle). It also
// drops the function's provisioned concurrency. It returns the joined
// Destroy errors; the reservations are released either way.
func (m *Manager) Retire(ctx context.Context, account, name string) error {
	return m.retire(ctx, account, name, "", true)
}

// RetireVersion is Retire for one version of the function ("$LATEST" or a
// number): the sandboxes of its other versions, and their provisioned
// concurrency, are left alone. Use it after an update of $LATEST or the
// deletion of one version.
func (m *Manager) RetireVersion(ctx context.Context, account, name, version string) error {
	return m.retire(ctx, account, name, version, false)
}

func (m *Manager) retire(ctx context.Context, account, name, version string, all bool) error {
	var victims []*entry
	flagged := 0
	m.mu.Lock()
	for key, pv := range m.provisions {
		if pv.fn.Account == account && pv.fn.Name == name && (all || pv.fn.Version == version) {
			delete(m.provisions, key)
		}
	}
	for _, p := range m.pools {
		if p.account != account || p.name != name || (!all && p.version != version) {
			continue
		}
		for _, e := range p.idle {
			e.state = stateDestroying
			victims = append(victims, e)
		}
		p.idle = nil
		for e := range p.busy {
			e.retired = true
			flagged++
		}
		m.dropIfEmptyLocked(p)
	}
	m.mu.Unlock()

	if len(victims) > 0 || flagged > 0 {
		m.log.Info("retiring function", "account", account, "function", name, "version", version,
			"idle", len(victims), "busy", flagged)
	}
	var errs []error
	for _, e := range victims {
		errs = append(errs, m.destroy(ctx, e, "retired"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("retire %s/%s (version %q): %w", account, name, version, err)
	}
	return nil
}

// Close stops the reaper, destroys the idle sandboxes (Destroy gets ctx),
// and waits, up to ctx, for the running invocations to end; their sandboxes
// are destroyed as they end. Every reservation is released. Invoke fails
// with ErrClosed afterwards. Close may be called more than once; a later
// call waits again for whatever is still running.
func (m *Manager) Close(ctx context.Context) error {
	var victims []*entry
	m.mu.Lock()
	m.closed = true
	clear(m.provisions)
	for _, p := range m.pools {
		for _, e := range p.idle {
			e.state = stateDestroying
			victims = append(victims, e)
		}
		p.idle = nil
		m.dropIfEmptyLocked(p)
	}
	m.mu.Unlock()

	var errs []error
	m.closeOnce.Do(func() { close(m.stopReaper) })
	m.stop()
	bgDone := make(chan struct{})
	go func() { m.bg.Wait(); close(bgDone) }()
	select {
	case <-bgDone:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("workermanager: close: waiting for provisioning: %w", ctx.Err()))
	}
	select {
	case <-m.reaperDone:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("workermanager: close: waiting for the reaper: %w", ctx.Err()))
	}

	for _, e := range victims {
		errs = append(errs, m.destroy(ctx, e, "manager closed"))
	}

	m.mu.Lock()
	var wait chan struct{}
	running := m.active
	if running > 0 {
		if m.quiesced == nil {
			m.quiesced = make(chan struct{})
		}
		wait = m.quiesced
	}
	m.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("workermanager: close: %d invocation(s) still running: %w", running, ctx.Err()))
		}
	}
	return errors.Join(errs...)
}
