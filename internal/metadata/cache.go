package metadata

import (
	"encoding/json"
	"maps"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// The read cache answers Get, GetAlias and Resolve (what every Invoke
// calls) from memory instead of a JetStream KV request per call.
//
// It holds the decoded value of every version key (<acct>.<name>.latest,
// <acct>.<name>.v<N>) and alias key (<acct>.<name>.alias.<A>) of the
// bucket, and a tombstone for each such key that was deleted or purged.
// Two sources fill it:
//
//   - the KV watch (watch.go), which replays the bucket and then delivers
//     every later change, from this process and from any other;
//   - write-through: after a write of this process returns, the stored
//     value and the revision the write returned go in at once, so a Get in
//     this process sees its own writes even before the watch delivers them.
//
// Both apply an entry only if its KV revision is newer than the cached
// one's (revisions are the bucket stream's sequence numbers, so they order
// all writes of all keys), so the watch never rolls back a write-through
// and a late write-through never rolls back a newer watched change.
//
// The cache answers only while it is current: from the end of the watch's
// initial replay (the watcher's nil marker) until the watch is known to
// have failed (connection lost, subscription closed, Close). Otherwise
// every read goes to the KV, exactly as without the cache. While current,
// a key missing from the map (or a tombstone) is still asked of the KV by
// the store before it answers "not found": the watch may lag another
// node's create, and a 404 for a function that node has just confirmed
// would be wrong.
//
// Cached values are never handed out: readers get copies (Function.clone,
// Alias.clone), since callers change what they get.

// cacheKey names a cached KV key without building the key string.
type cacheKey struct {
	account, name string
	alias         bool
	// q is the version (LatestVersion, "1", "2"...) or, for an alias key,
	// the alias name.
	q string
}

// versionCacheKey is the cache key of a function version, ok false when
// version is not one the cache keeps (then the KV answers).
func versionCacheKey(account, name, version string) (cacheKey, bool) {
	if version == "" || version == LatestVersion {
		return cacheKey{account: account, name: name, q: LatestVersion}, true
	}
	if IsVersionNumber(version) {
		return cacheKey{account: account, name: name, q: version}, true
	}
	return cacheKey{}, false
}

// parseCacheKey maps a KV key to its cache key; ok is false for keys the
// cache does not keep (concurrency settings, anything unexpected).
func parseCacheKey(key string) (k cacheKey, ok bool) {
	account, rest, ok := strings.Cut(key, ".")
	if !ok {
		return cacheKey{}, false
	}
	name, tail, ok := strings.Cut(rest, ".")
	if !ok || !validKeyPart(account) || !validKeyPart(name) {
		return cacheKey{}, false
	}
	switch {
	case tail == "latest":
		return cacheKey{account: account, name: name, q: LatestVersion}, true
	case strings.HasPrefix(tail, "v") && IsVersionNumber(tail[1:]):
		return cacheKey{account: account, name: name, q: tail[1:]}, true
	case strings.HasPrefix(tail, "alias.") && validKeyPart(tail[len("alias."):]):
		return cacheKey{account: account, name: name, alias: true, q: tail[len("alias."):]}, true
	}
	return cacheKey{}, false
}

// cacheEntry is one key's state at revision rev: a Function (version key)
// or an Alias (alias key), neither for a deleted key, or bad when the
// stored value does not decode (readers then ask the KV, which reports
// the error).
type cacheEntry struct {
	rev   uint64
	fn    *Function
	alias *Alias
	bad   bool
}

// decodeEntry turns a KV operation on key k into a cache entry. Decoding
// happens outside the cache lock.
func decodeEntry(k cacheKey, op jetstream.KeyValueOp, rev uint64, value []byte) cacheEntry {
	e := cacheEntry{rev: rev}
	if op != jetstream.KeyValuePut {
		return e // tombstone
	}
	if k.alias {
		var a Alias
		if err := json.Unmarshal(value, &a); err != nil {
			e.bad = true
			return e
		}
		a.KVRevision = rev
		e.alias = &a
		return e
	}
	var f Function
	if err := json.Unmarshal(value, &f); err != nil {
		e.bad = true
		return e
	}
	f.KVRevision = rev
	e.fn = &f
	return e
}

// cache is the in-memory copy of the bucket's version and alias keys. It
// is safe for concurrent use.
type cache struct {
	mu sync.RWMutex
	// current (guarded by mu) is true while the watch is live and its
	// initial replay is complete: only then may reads be answered here.
	current bool
	// entries (guarded by mu) holds the newest known state of each key.
	entries map[cacheKey]cacheEntry
}

func newCache() *cache { return &cache{entries: make(map[cacheKey]cacheEntry)} }

// lookup returns the cached state of k. ok is false when the cache may not
// answer (not current, or an undecodable value): ask the KV. A key absent
// from a current cache does not exist (a zero entry is returned).
func (c *cache) lookup(k cacheKey) (e cacheEntry, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.current {
		return cacheEntry{}, false
	}
	e = c.entries[k]
	if e.bad {
		return cacheEntry{}, false
	}
	return e, true
}

// apply records e for k unless the cache already knows a revision of k at
// least as new.
func (c *cache) apply(k cacheKey, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[k]; ok && old.rev >= e.rev {
		return
	}
	c.entries[k] = e
}

// applyKV decodes and applies one KV operation; keys the cache does not
// keep are ignored.
func (c *cache) applyKV(key string, op jetstream.KeyValueOp, rev uint64, value []byte) {
	k, ok := parseCacheKey(key)
	if !ok || rev == 0 {
		return
	}
	c.apply(k, decodeEntry(k, op, rev, value))
}

// setCurrent marks the cache as answering (true) or not (false).
func (c *cache) setCurrent(current bool) {
	c.mu.Lock()
	c.current = current
	c.mu.Unlock()
}

// isCurrent reports whether reads are answered from the cache.
func (c *cache) isCurrent() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.current
}

// reset empties the cache and stops it answering, before a new watch
// replays the bucket. Write-throughs after reset are kept; the new watch
// replays every write that precedes its creation.
func (c *cache) reset() {
	c.mu.Lock()
	c.current = false
	clear(c.entries)
	c.mu.Unlock()
}

// clone returns a copy of a that shares nothing mutable with it.
func (a *Alias) clone() *Alias {
	c := *a
	if a.AdditionalVersionWeights != nil {
		c.AdditionalVersionWeights = maps.Clone(a.AdditionalVersionWeights)
	}
	return &c
}
