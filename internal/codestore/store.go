// Package codestore keeps functions' code packages (Lambda deployment zips)
// in a JetStream object store, content-addressed by SHA-256, and unpacks
// them safely onto a worker's disk.
//
// A package is validated completely before it is stored (see Validate), so
// everything in the store is known to extract within the limits. Object
// names are the lowercase hex SHA-256 of the zip, so identical uploads are
// stored once and a digest names exactly one content forever.
package codestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/writegate"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBucket is the object store bucket used when Config.Bucket is empty.
const DefaultBucket = "flint-code"

// ErrNotFound is wrapped by Get and Unpack when no package has the digest.
var ErrNotFound = errors.New("code package not found")

// Config configures a Store.
type Config struct {
	// JS is the backbone's JetStream context. Required.
	JS jetstream.JetStream
	// Bucket is the object store bucket; DefaultBucket when empty.
	Bucket string
	// Limits on packages; zero fields mean Lambda's defaults.
	Limits Limits
	// Replicas of the bucket (default 1); an existing bucket is updated.
	Replicas int
	// Gate, when set, is asked before a package is stored, so a write
	// the backbone cannot take is refused at once.
	Gate writegate.Gate
	// Logger; a discarding logger when nil.
	Logger *slog.Logger
}

// Validate reports whether cfg is usable.
func (c Config) Validate() error {
	if c.JS == nil {
		return errors.New("codestore: config needs a JetStream context")
	}
	return nil
}

// Package describes a stored code package.
type Package struct {
	// Digest is the lowercase hex SHA-256 of the zip: the object name and
	// the worker's cache directory name.
	Digest string
	// Sha256 is the base64 (standard encoding) SHA-256 of the zip, what
	// Lambda reports as CodeSha256.
	Sha256 string
	// Size is the zip's size in bytes (Lambda's CodeSize).
	Size int64
	// UnzippedSize is the size of the extracted files (see Measure); set
	// by Put.
	UnzippedSize int64
}

// Store is the code package store. It is safe for concurrent use.
type Store struct {
	gate   writegate.Gate
	obs    jetstream.ObjectStore
	limits Limits
	log    *slog.Logger

	mu       sync.Mutex         // guards inflight
	inflight map[string]*unpack // Unpack calls in progress, by target dir
}

// unpack is one in-progress Unpack that concurrent callers for the same
// directory wait for.
type unpack struct {
	done chan struct{}
	err  error // set before done is closed
}

// New opens (creating it if needed) the object store bucket, with file
// storage.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obs, err := cfg.JS.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      cfg.Bucket,
		Description: "Flint function code packages, by SHA-256",
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, cfg.Replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("codestore: open bucket %s: %w", cfg.Bucket, err)
	}
	return &Store{
		gate:     cfg.Gate,
		obs:      obs,
		limits:   cfg.Limits.withDefaults(),
		log:      cfg.Logger,
		inflight: make(map[string]*unpack),
	}, nil
}

// Limits returns the limits the store enforces (defaults filled in).
func (s *Store) Limits() Limits { return s.limits }

// describe computes a zip's Package.
func describe(data []byte) Package {
	sum := sha256.Sum256(data)
	return Package{
		Digest: hex.EncodeToString(sum[:]),
		Sha256: base64.StdEncoding.EncodeToString(sum[:]),
		Size:   int64(len(data)),
	}
}

// checkDigest rejects anything but 64 lowercase hex digits, so a digest is
// always a safe object name and directory name.
func checkDigest(digest string) error {
	if len(digest) != 2*sha256.Size {
		return fmt.Errorf("codestore: bad digest %q: want %d hex digits", digest, 2*sha256.Size)
	}
	for _, c := range digest {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("codestore: bad digest %q: want lowercase hex", digest)
		}
	}
	return nil
}

// Put validates a zip fully (see Validate) and stores it under its digest.
// Storing bytes that are already stored is a no-op returning the same
// Package. Bad input gives a *lambdaerr.Error (InvalidParameterValue or
// RequestEntityTooLarge); other errors are backbone failures.
func (s *Store) Put(ctx context.Context, zip []byte) (Package, error) {
	unzipped, err := Measure(zip, s.limits)
	if err != nil {
		return Package{}, err
	}
	pkg := describe(zip)
	pkg.UnzippedSize = unzipped
	if s.Has(ctx, pkg.Digest) {
		return pkg, nil
	}
	if err := writegate.Check(s.gate, writegate.Data); err != nil {
		return Package{}, err
	}
	_, err = s.obs.Put(ctx, jetstream.ObjectMeta{
		Name:     pkg.Digest,
		Metadata: map[string]string{"sha256": pkg.Sha256},
	}, bytes.NewReader(zip))
	if err != nil {
		return Package{}, fmt.Errorf("codestore: put %s: %w", pkg.Digest, writegate.Describe("the code package", err))
	}
	s.log.Debug("code package stored", "digest", pkg.Digest, "size", pkg.Size)
	return pkg, nil
}

// Has reports whether a package with the digest is stored. Any error
// (including an unreachable backbone) reads as false.
func (s *Store) Has(ctx context.Context, digest string) bool {
	if checkDigest(digest) != nil {
		return false
	}
	info, err := s.obs.GetInfo(ctx, digest)
	return err == nil && !info.Deleted
}

// Get returns the zip stored under digest, after checking that its bytes
// hash to digest. A missing package wraps ErrNotFound.
func (s *Store) Get(ctx context.Context, digest string) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	data, err := s.obs.GetBytes(ctx, digest)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, fmt.Errorf("codestore: get %s: %w", digest, ErrNotFound)
		}
		return nil, fmt.Errorf("codestore: get %s: %w", digest, err)
	}
	if got := describe(data).Digest; got != digest {
		return nil, fmt.Errorf("codestore: get %s: fetched bytes hash to %s", digest, got)
	}
	return data, nil
}

// UnzippedSize returns the unzipped size (see Measure) of the stored
// package with the digest. A missing package wraps ErrNotFound.
func (s *Store) UnzippedSize(ctx context.Context, digest string) (int64, error) {
	data, err := s.Get(ctx, digest)
	if err != nil {
		return 0, err
	}
	n, err := Measure(data, s.limits)
	if err != nil {
		return 0, fmt.Errorf("codestore: measure %s: %w", digest, err)
	}
	return n, nil
}

// Delete removes the package (best effort, for garbage collection of
// packages no function version refers to). Deleting a missing package is
// not an error.
func (s *Store) Delete(ctx context.Context, digest string) error {
	if err := checkDigest(digest); err != nil {
		return err
	}
	if err := s.obs.Delete(ctx, digest); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("codestore: delete %s: %w", digest, err)
	}
	return nil
}

// Unpack makes dir hold the extracted package with the given digest. dir
// is a cache entry named by the digest (the worker uses <data>/code/<digest>):
// when it already exists Unpack returns nil at once. Otherwise the package
// is fetched, its digest checked, and it is extracted atomically (see
// Extract); dir's parent is created if needed.
//
// Concurrent Unpacks into the same dir, in this process or others, are
// safe: in this process they share one fetch; across processes the first
// rename wins and the others return nil. A missing package wraps
// ErrNotFound. ctx bounds the wait and the fetch; a caller that waited on
// another whose ctx ended first tries again itself.
func (s *Store) Unpack(ctx context.Context, digest, dir string) error {
	if err := checkDigest(digest); err != nil {
		return err
	}
	// A waiter whose leader gave up because of the leader's own ctx tries
	// again (a few times) on its own.
	var err error
	for range 3 {
		if _, statErr := os.Lstat(dir); statErr == nil {
			return nil
		}
		s.mu.Lock()
		u, running := s.inflight[dir]
		if !running {
			u = &unpack{done: make(chan struct{})}
			s.inflight[dir] = u
		}
		s.mu.Unlock()
		if !running {
			u.err = s.unpack(ctx, digest, dir)
			s.mu.Lock()
			delete(s.inflight, dir)
			s.mu.Unlock()
			close(u.done)
			return u.err
		}
		select {
		case <-u.done:
		case <-ctx.Done():
			return fmt.Errorf("codestore: unpack %s: %w", digest, ctx.Err())
		}
		err = u.err
		leaderGaveUp := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
		if err == nil || !leaderGaveUp || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (s *Store) unpack(ctx context.Context, digest, dir string) error {
	start := time.Now()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("codestore: unpack %s: %w", digest, err)
	}
	data, err := s.Get(ctx, digest)
	if err != nil {
		return err
	}
	if err := Extract(data, dir, s.limits); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return fmt.Errorf("codestore: unpack %s: %w", digest, err)
	}
	s.log.Debug("code package unpacked", "digest", digest, "dir", dir, "took", time.Since(start))
	return nil
}
