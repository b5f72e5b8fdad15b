package backbone

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/flintdev/flint/internal/writegate"
)

// Health monitoring. A goroutine (monitor) looks every diskInterval at the
// data dir's disk (embedded server only) and every probeInterval asks
// JetStream for the account's info, which needs a quorum of the cluster's
// meta group; the result is one Health value that Allow and Ready read
// without blocking.
//
// Storage states of the embedded server, by the disk's free space:
//
//	          free < 2×reserve             free < reserve
//	  ok ───────────────────▶ logs off ───────────────────▶ full
//	  ▲                                                      │ free ≥ 2×reserve
//	  └───────────── restart the embedded server ◀───────────┘
//
// In "logs off" function logs are dropped (and counted); in "full" every
// write is refused with "storage full". Leaving "full" (or a disk write
// error the server reported) restarts the embedded server: JetStream
// stops writing to a stream for good after a failed disk write, and a
// restart recovers its files, so queued events run again and unacked
// ones are redelivered without an operator's restart.

const (
	diskInterval  = 200 * time.Millisecond
	probeInterval = 2 * time.Second
	probeTimeout  = 2 * time.Second
	// warnUsed is the disk use above which a warning is logged.
	warnUsed = 0.90
)

// Health is the backbone's state as last seen.
type Health struct {
	// Connected: the client is connected to a NATS server.
	Connected bool `json:"connected"`
	// JetStream is "" when the last probe succeeded, else why it failed
	// (no quorum, unreachable).
	JetStream string `json:"jetstreamError,omitempty"`
	// Restarting: the embedded server is restarting after a full disk.
	Restarting bool `json:"restarting,omitempty"`
	// Disk of the data dir (embedded server only).
	Disk *Disk `json:"disk,omitempty"`
	// Reserve is the free space kept on that disk.
	Reserve int64 `json:"reserveBytes,omitempty"`
	// Full: writes are refused for lack of space; LogsOff: logs are
	// dropped for lack of space.
	Full    bool `json:"storageFull"`
	LogsOff bool `json:"logsOff"`
	// Restarts counts restarts of the embedded server after a full disk.
	Restarts int `json:"restarts,omitempty"`
}

// Health returns the latest view of the backbone.
func (b *Backbone) Health() Health {
	h := *b.health.Load()
	if b.nc != nil {
		h.Connected = b.nc.IsConnected()
	}
	if p := b.probeErr.Load(); p != nil {
		h.JetStream = *p
	}
	return h
}

// Ready returns nil when this node can take writes now: connected,
// JetStream answering (a quorum is reachable), room on the disk;
// otherwise an error saying which is missing.
func (b *Backbone) Ready() error {
	if err := b.Allow(writegate.Events); err != nil {
		return err
	}
	if h := b.Health(); h.JetStream != "" {
		return writegate.UnavailableError("JetStream does not answer: " + h.JetStream)
	}
	return nil
}

// Allow implements writegate.Gate.
func (b *Backbone) Allow(k writegate.Kind) error {
	h := b.Health()
	switch {
	case !h.Connected:
		return writegate.UnavailableError("not connected to NATS; nothing was stored, retry later")
	case h.Restarting:
		return writegate.UnavailableError("the embedded NATS server is restarting after its disk was full; retry in a few seconds")
	case b.writeFault.Load():
		// Set from the server's own log the moment a disk write fails,
		// before the next look at the disk.
		return writegate.StorageFullError("the embedded NATS server could not write to the data dir's disk; writes resume by themselves once space is freed")
	case h.Full, k == writegate.Logs && h.LogsOff:
		return writegate.StorageFullError(fmt.Sprintf("the data dir's disk has %s free, below the %s kept in reserve (--nats-reserve); free space on it",
			mib(h.Disk.Free), mib(h.Reserve)))
	}
	return nil
}

var _ writegate.Gate = (*Backbone)(nil)

// monitor updates Health until Close.
func (b *Backbone) monitor() {
	defer b.monitorWG.Done()
	storeDir := ""
	if b.embedded {
		storeDir = filepath.Join(b.cfg.DataDir, "nats")
	}
	disk := time.NewTicker(diskInterval)
	defer disk.Stop()
	b.monitorWG.Add(1)
	go b.probeLoop()
	var warned bool
	for {
		h := *b.health.Load()
		if storeDir != "" {
			if d, err := statDisk(storeDir); err == nil {
				h.Disk, h.Reserve = &d, b.limits.Reserve
				wasFull := h.Full
				h.LogsOff = d.Free < 2*b.limits.Reserve
				h.Full = d.Free < b.limits.Reserve || wasFull && h.LogsOff
				if h.Full && !wasFull {
					b.log.Error("backbone: data dir disk full, refusing writes until space is freed",
						"freeBytes", d.Free, "reserveBytes", b.limits.Reserve)
				}
				if d.UsedFraction() >= warnUsed && !warned {
					b.log.Warn("backbone: data dir disk more than 90% full", "usedPercent", int(d.UsedFraction()*100), "freeBytes", d.Free)
				}
				warned = d.UsedFraction() >= warnUsed
				if (wasFull || b.writeFault.Load()) && !h.Full && !h.LogsOff {
					h.Restarting = true
					b.health.Store(&h)
					b.restart()
					h.Restarting = false
					h.Restarts++
				}
			}
		}
		b.health.Store(&h)
		select {
		case <-b.stop:
			return
		case <-disk.C:
		}
	}
}

// probeLoop asks JetStream for the account's info every probeInterval
// until Close; the answer needs the meta group's quorum.
func (b *Backbone) probeLoop() {
	defer b.monitorWG.Done()
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		_, err := b.js.AccountInfo(ctx)
		cancel()
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		b.probeErr.Store(&msg)
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
	}
}

// restart replaces the embedded server with a new one on the same store
// and port; the client connection reconnects to it by itself.
func (b *Backbone) restart() {
	b.log.Warn("backbone: restarting the embedded NATS server to recover its streams after the disk was full")
	start := time.Now()
	b.mu.Lock()
	old := b.srv
	b.srv = nil
	b.mu.Unlock()
	if old != nil {
		shutdownServer(old, b.log)
	}
	b.writeFault.Store(false)
	for attempt := 0; ; attempt++ {
		srv, err := b.startEmbedded()
		if err == nil {
			b.mu.Lock()
			b.srv = srv
			b.mu.Unlock()
			break
		}
		b.log.Error("backbone: restarting the embedded NATS server", "attempt", attempt, "err", err)
		select {
		case <-b.stop:
			return
		case <-time.After(time.Second):
		}
	}
	// Wait (briefly) for the client to be back, so Allow does not flap.
	for i := 0; i < 40 && !b.nc.IsConnected(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	b.log.Info("backbone: embedded NATS server restarted", "took", time.Since(start).Round(time.Millisecond))
}

// serverLog passes the embedded server's log to slog (notices at debug
// level) and notices failed disk writes, after which JetStream refuses
// writes to the stream until the server restarts.
type serverLog struct{ b *Backbone }

func (l *serverLog) Noticef(format string, v ...any) {
	l.b.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l *serverLog) Warnf(format string, v ...any) {
	l.b.log.Warn("nats: " + fmt.Sprintf(format, v...))
}
func (l *serverLog) Fatalf(format string, v ...any) {
	l.b.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l *serverLog) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "no space left") || strings.Contains(msg, "write error") || strings.Contains(msg, "out of") && strings.Contains(msg, "resources") {
		l.b.writeFault.Store(true)
	}
	l.b.log.Error("nats: " + msg)
}
func (l *serverLog) Debugf(format string, v ...any) {}
func (l *serverLog) Tracef(format string, v ...any) {}
