// Package keystore keeps Flint's access keys in the backbone (a JetStream
// key/value bucket), so every server of a cluster verifies the same keys,
// and serves the key-management endpoints (/flint/v1/keys).
//
// Each key belongs to one 12-digit account. SigV4 is an HMAC: the server
// must recompute it, so the bucket holds each secret itself, not a hash of
// it. The bucket is therefore as sensitive as the keys: whoever can read
// the backbone can sign as anyone (docs/auth.md). Secrets are never logged
// and never returned after the call that created them.
//
// Reads are answered from memory: a watch of the bucket keeps a copy
// current (a key deleted on one server stops working on every server as
// soon as the watch delivers the delete). While the watch is not live —
// starting, or the NATS connection down — reads go to the bucket.
package keystore

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/lambdaerr"
)

// Bucket is the JetStream KV bucket of access keys, keyed by access key id.
const Bucket = "flint-keys"

// Config configures a Store.
type Config struct {
	JS       jetstream.JetStream // required
	Replicas int                 // of the bucket (default 1); an existing one is updated
	Logger   *slog.Logger        // default slog.Default()
	Clock    func() time.Time    // default time.Now
}

// Store is the access-key store. Safe for concurrent use.
type Store struct {
	kv    jetstream.KeyValue
	log   *slog.Logger
	clock func() time.Time

	mu      sync.RWMutex        // guards keys and current
	keys    map[string]auth.Key // the bucket, as the watch delivered it
	current bool                // keys reflects the bucket (the watch is live)

	cancel context.CancelFunc
	done   chan struct{}
}

// Open opens (creating when missing) the bucket and starts its watch.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.JS == nil {
		return nil, errors.New("keystore: JetStream is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	kv, err := cfg.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Flint access keys",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, cfg.Replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: open bucket %s: %w", Bucket, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	s := &Store{kv: kv, log: cfg.Logger, clock: cfg.Clock, keys: map[string]auth.Key{}, cancel: cancel, done: make(chan struct{})}
	go s.watch(wctx, cfg.JS.Conn())
	return s, nil
}

// Close stops the watch; the store keeps answering from the bucket.
func (s *Store) Close(ctx context.Context) error {
	s.cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LookupKey returns the key with id (with its secret); ok is false when
// there is none.
func (s *Store) LookupKey(ctx context.Context, id string) (auth.Key, bool, error) {
	if !validID(id) {
		return auth.Key{}, false, nil
	}
	s.mu.RLock()
	k, ok := s.keys[id]
	current := s.current
	s.mu.RUnlock()
	if current {
		return k, ok, nil
	}
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return auth.Key{}, false, nil
	}
	if err != nil {
		return auth.Key{}, false, fmt.Errorf("keystore: get %s: %w", id, err)
	}
	if err := json.Unmarshal(e.Value(), &k); err != nil {
		return auth.Key{}, false, fmt.Errorf("keystore: decode %s: %w", id, err)
	}
	return k, true, nil
}

// Create makes a new key of account (a root key when root) and returns it
// with its secret, which is never returned again.
func (s *Store) Create(ctx context.Context, account string, root bool) (auth.Key, error) {
	if !auth.ValidAccount(account) {
		return auth.Key{}, lambdaerr.New(lambdaerr.InvalidParameterValue, "Account must be a 12-digit account id, got %q", account)
	}
	id, secret, err := newKeyPair()
	if err != nil {
		return auth.Key{}, err
	}
	k := auth.Key{AccessKeyID: id, SecretAccessKey: secret, Account: account, Root: root, Created: s.clock().UTC()}
	if err := s.put(ctx, k, true); err != nil {
		return auth.Key{}, err
	}
	return k, nil
}

// put stores k; with create it fails when the id exists.
func (s *Store) put(ctx context.Context, k auth.Key, create bool) error {
	data, err := json.Marshal(k)
	if err != nil {
		return fmt.Errorf("keystore: encode %s: %w", k.AccessKeyID, err)
	}
	if create {
		_, err = s.kv.Create(ctx, k.AccessKeyID, data)
	} else {
		_, err = s.kv.Put(ctx, k.AccessKeyID, data)
	}
	if err != nil {
		return fmt.Errorf("keystore: store %s: %w", k.AccessKeyID, err)
	}
	s.mu.Lock()
	s.keys[k.AccessKeyID] = k
	s.mu.Unlock()
	return nil
}

// List returns every key, without secrets, oldest first.
func (s *Store) List(ctx context.Context) ([]auth.Key, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("keystore: list: %w", err)
	}
	var out []auth.Key
	for id := range lister.Keys() {
		k, ok, err := s.LookupKey(ctx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			k.SecretAccessKey = ""
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].AccessKeyID < out[j].AccessKeyID
	})
	return out, nil
}

// Delete removes a key: requests signed with it are refused from then on
// (on other servers as soon as their watch sees the delete). An unknown
// id is a ResourceNotFoundException.
func (s *Store) Delete(ctx context.Context, id string) error {
	if _, ok, err := s.LookupKey(ctx, id); err != nil {
		return err
	} else if !ok {
		return lambdaerr.New(lambdaerr.ResourceNotFound, "Access key not found: %s", id)
	}
	if err := s.kv.Delete(ctx, id); err != nil {
		return fmt.Errorf("keystore: delete %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.keys, id)
	s.mu.Unlock()
	return nil
}

// idEncoding spells access key ids: upper-case letters and digits, as AWS's.
var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newKeyPair returns a random access key id ("AKFL" and 16 base32
// characters: 80 random bits) and a 40-character secret (240 bits).
func newKeyPair() (id, secret string, err error) {
	var b [40]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("keystore: random: %w", err)
	}
	return "AKFL" + idEncoding.EncodeToString(b[:10]), base64.StdEncoding.EncodeToString(b[10:]), nil
}

// validID reports whether id can be a key of the bucket (and so of
// Flint): upper-case letters and digits, 16 to 128 of them.
func validID(id string) bool {
	if len(id) < 16 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// watch keeps s.keys current until ctx ends, re-establishing the watch
// after a failure or a disconnection.
func (s *Store) watch(ctx context.Context, nc *nats.Conn) {
	defer close(s.done)
	var status chan nats.Status
	if nc != nil {
		status = nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
		defer nc.RemoveStatusListener(status)
	}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil && (nc == nil || !nc.IsClosed()) {
		if s.watchOnce(ctx, status) {
			backoff = 50 * time.Millisecond
		}
		s.setCurrent(false, nil)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (s *Store) setCurrent(current bool, keys map[string]auth.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = current
	if keys != nil {
		s.keys = keys
	}
}

// watchOnce runs one watch of the bucket until it fails or ctx ends and
// reports whether it became live.
func (s *Store) watchOnce(ctx context.Context, status <-chan nats.Status) (live bool) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kw, err := s.kv.WatchAll(wctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("keystore: cannot watch the key bucket; reading it directly until it can", "err", err)
		}
		return false
	}
	defer kw.Stop()
	replay := map[string]auth.Key{}
	for {
		select {
		case <-ctx.Done():
			return live
		case <-status:
			return live
		case e, ok := <-kw.Updates():
			if !ok {
				return live
			}
			if e == nil { // end of the initial replay
				s.setCurrent(true, replay)
				live = true
				continue
			}
			var k auth.Key
			del := e.Operation() != jetstream.KeyValuePut
			if !del {
				if err := json.Unmarshal(e.Value(), &k); err != nil {
					s.log.Warn("keystore: undecodable key record skipped", "accessKeyId", e.Key(), "err", err)
					del = true
				}
			}
			if !live {
				if del {
					delete(replay, e.Key())
				} else {
					replay[e.Key()] = k
				}
				continue
			}
			s.mu.Lock()
			if del {
				delete(s.keys, e.Key())
			} else {
				s.keys[e.Key()] = k
			}
			s.mu.Unlock()
		}
	}
}
