package metadata

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Watch lifecycle (one goroutine, watcher.run):
//
//	      start / retry after backoff
//	             |
//	             v
//	   reset cache (not current) --WatchAll fails--> backoff --+
//	             |                                            |
//	     replaying (cache fills, KV answers reads)            |
//	             | nil marker                                 |
//	             v                                            |
//	   live (cache current, answers reads)                    |
//	             | disconnected / reconnecting / closed,      |
//	             | updates channel closed, resync requested   |
//	             v                                            |
//	   not current, stop the KV watcher -----------------------+
//
// The loop ends on Close or when the NATS connection is closed for good;
// the cache is then left not current, so reads go to the KV.

const (
	// watchStartTimeout bounds creating the KV watcher (one consumer
	// create request).
	watchStartTimeout = 5 * time.Second
	// watchStopTimeout bounds waiting for a stopped KV watcher to close
	// its updates channel.
	watchStopTimeout = 5 * time.Second
	minWatchBackoff  = 50 * time.Millisecond
	maxWatchBackoff  = 2 * time.Second
)

// watcher keeps a cache current by a JetStream KV watch of the whole
// bucket. Its fields are set before run starts and not changed after.
type watcher struct {
	kv    jetstream.KeyValue
	nc    *nats.Conn
	cache *cache
	log   *slog.Logger
	// resync asks run to drop the cache and replay the bucket (buffered 1;
	// senders never block).
	resync chan struct{}
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
}

// startWatcher starts keeping c current from kv. The watch lives until
// stop (or until nc is closed), not for the duration of any one call.
func startWatcher(kv jetstream.KeyValue, nc *nats.Conn, c *cache, log *slog.Logger) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{kv: kv, nc: nc, cache: c, log: log, resync: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	// Registered before run starts so no disconnect after this point is
	// missed.
	status := nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	go w.run(ctx, status)
	return w
}

// requestResync makes the cache stop answering now and the watch replay
// the bucket. Safe for concurrent use.
func (w *watcher) requestResync() {
	w.cache.setCurrent(false)
	select {
	case w.resync <- struct{}{}:
	default:
	}
}

// stop ends the watch and waits for run to return or ctx to end.
func (w *watcher) stop(ctx context.Context) error {
	w.cancel()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *watcher) run(ctx context.Context, status chan nats.Status) {
	defer close(w.done)
	defer w.nc.RemoveStatusListener(status)
	defer w.cache.setCurrent(false)
	backoff := minWatchBackoff
	for ctx.Err() == nil && !w.nc.IsClosed() {
		if w.watchOnce(ctx, status) {
			backoff = minWatchBackoff
		}
		w.cache.setCurrent(false)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, maxWatchBackoff)
	}
}

// watchOnce runs one KV watch until it fails or ctx ends. It reports
// whether the initial replay completed (the cache became current).
func (w *watcher) watchOnce(ctx context.Context, status <-chan nats.Status) (replayed bool) {
	w.cache.reset()
	// Status events and resync requests from before this watch concern
	// an older one.
	for drained := false; !drained; {
		select {
		case <-status:
		case <-w.resync:
		default:
			drained = true
		}
	}
	if w.nc.Status() != nats.CONNECTED {
		return false
	}
	// The watch's subscription lives as long as the context given to
	// WatchAll, so that context ends with this watch, or when creating it
	// takes longer than watchStartTimeout.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	timer := time.AfterFunc(watchStartTimeout, wcancel)
	kw, err := w.kv.WatchAll(wctx)
	if !timer.Stop() && err == nil {
		_ = kw.Stop()
		err = context.DeadlineExceeded
	}
	if err != nil {
		if ctx.Err() == nil && !w.nc.IsClosed() && !w.nc.IsDraining() {
			w.log.Warn("metadata: cannot watch function bucket; reading from the KV until it can", "bucket", w.kv.Bucket(), "error", err)
		}
		return false
	}
	updates := kw.Updates()
	defer w.stopWatch(kw, updates)
	for {
		select {
		case <-ctx.Done():
			return replayed
		case s := <-status:
			w.cache.setCurrent(false)
			if s != nats.CLOSED { // closed for good: the loop ends, nothing to report
				w.log.Warn("metadata: function bucket watch interrupted; reading from the KV until it is re-established", "bucket", w.kv.Bucket(), "connection", s.String())
			}
			return replayed
		case <-w.resync:
			w.cache.setCurrent(false)
			return replayed
		case e, ok := <-updates:
			if !ok {
				w.cache.setCurrent(false)
				if ctx.Err() == nil && !w.nc.IsClosed() && !w.nc.IsDraining() {
					w.log.Warn("metadata: function bucket watch closed; reading from the KV until it is re-established", "bucket", w.kv.Bucket())
				}
				return replayed
			}
			if e == nil {
				// End of the initial replay: every key that exists is in.
				w.cache.setCurrent(true)
				replayed = true
				continue
			}
			w.cache.applyKV(e.Key(), e.Operation(), e.Revision(), e.Value())
		}
	}
}

// stopWatch stops kw and discards what it still delivers until it closes
// its updates channel (its delivery goroutine blocks on a full channel, so
// it must be drained), waiting at most watchStopTimeout.
func (w *watcher) stopWatch(kw jetstream.KeyWatcher, updates <-chan jetstream.KeyValueEntry) {
	_ = kw.Stop() // fails only when the connection is gone, which closes the channel too
	t := time.NewTimer(watchStopTimeout)
	defer t.Stop()
	for {
		select {
		case _, ok := <-updates:
			if !ok {
				return
			}
		case <-t.C:
			w.log.Warn("metadata: stopped bucket watch did not close", "bucket", w.kv.Bucket())
			return
		}
	}
}
