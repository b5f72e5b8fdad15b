package logstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ReadOptions select which entries Read delivers.
type ReadOptions struct {
	// Since, when set, skips entries stored before it.
	Since time.Time
	// Tail, when > 0, delivers only the last Tail entries (of those at or
	// after Since) stored when Read starts.
	Tail int
	// Follow keeps delivering new entries, as they are stored, until ctx
	// is done.
	Follow bool
}

// Read delivers a function's log entries to fn, oldest first, one at a
// time from the calling goroutine. Without Follow it returns nil after
// delivering the entries stored when it started; with Follow it keeps
// delivering new entries and returns nil when ctx is done. An error from
// fn stops Read and is returned as is. Entries of other functions never
// appear. Read may be called concurrently with Append and other Reads.
func (s *Store) Read(ctx context.Context, account, function string, opts ReadOptions, fn func(Entry) error) error {
	subj, err := subject(account, function)
	if err != nil {
		return err
	}
	last, lastTime, err := s.lastOf(ctx, subj)
	if err != nil {
		return fmt.Errorf("logstore: read %s/%s: %w", account, function, err)
	}
	if !opts.Follow && (last == 0 || !opts.Since.IsZero() && lastTime.Before(opts.Since)) {
		return nil // nothing stored that matches
	}
	start := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if !opts.Since.IsZero() {
		since := opts.Since
		start.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		start.OptStartTime = &since
	}
	if opts.Tail > 0 {
		var none bool
		start, none, err = s.tailStart(ctx, subj, start, uint64(opts.Tail), last)
		if err != nil {
			return fmt.Errorf("logstore: read %s/%s: %w", account, function, err)
		}
		if none && !opts.Follow {
			return nil
		}
	}
	if err := s.deliver(ctx, start, opts.Follow, last, fn); err != nil {
		var ce callbackError
		if errors.As(err, &ce) {
			return ce.err
		}
		if errors.Is(err, errStop) {
			return nil
		}
		return fmt.Errorf("logstore: read %s/%s: %w", account, function, err)
	}
	return nil
}

// errStop ends deliver normally.
var errStop = errors.New("stop")

// callbackError marks an error returned by Read's fn, to return it as is.
type callbackError struct{ err error }

func (c callbackError) Error() string { return c.err.Error() }

// lastOf returns the sequence and time of the last entry on subj, 0 when
// there is none.
func (s *Store) lastOf(ctx context.Context, subj string) (uint64, time.Time, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	return m.Sequence, m.Time, nil
}

// pending counts the entries a consumer starting as cfg would deliver,
// using a short-lived ephemeral consumer that never delivers anything.
func (s *Store) pending(ctx context.Context, subj string, cfg jetstream.OrderedConsumerConfig) (uint64, error) {
	c, err := s.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     subj,
		DeliverPolicy:     cfg.DeliverPolicy,
		OptStartSeq:       cfg.OptStartSeq,
		OptStartTime:      cfg.OptStartTime,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: 30 * time.Second, // cleaned up by the server if the delete below fails
	})
	if err != nil {
		return 0, err
	}
	info := c.CachedInfo()
	_ = s.stream.DeleteConsumer(ctx, info.Name)
	return info.NumPending, nil
}

// tailStart returns where to start to deliver the last n entries among
// those base would deliver. It counts them, and when there are more than n
// binary-searches the start sequence S with exactly n entries at or after
// it: each probe is one ephemeral consumer, at most ~64 of them, and no
// entry is transferred. last is the subject's last sequence. When nothing
// matches it reports none and starts after last (for following).
func (s *Store) tailStart(ctx context.Context, subj string, base jetstream.OrderedConsumerConfig, n, last uint64) (cfg jetstream.OrderedConsumerConfig, none bool, err error) {
	total, err := s.pending(ctx, subj, base)
	if err != nil {
		return base, false, err
	}
	if total == 0 {
		base.DeliverPolicy, base.OptStartTime, base.OptStartSeq = jetstream.DeliverByStartSequencePolicy, nil, last+1
		return base, true, nil
	}
	if total <= n {
		return base, false, nil
	}
	// countFrom(seq) is non-increasing in seq and drops by at most one per
	// step; countFrom(lo) >= n > countFrom(hi) holds throughout. Entries at
	// or after base's start are a suffix (times grow with sequences), so
	// the last n of all entries are the last n of base's.
	countFrom := func(seq uint64) (uint64, error) {
		cfg := base
		cfg.DeliverPolicy, cfg.OptStartTime, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, nil, seq
		return s.pending(ctx, subj, cfg)
	}
	lo, hi := uint64(1), last+1
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		c, err := countFrom(mid)
		if err != nil {
			return base, false, err
		}
		if c >= n {
			lo = mid
		} else {
			hi = mid
		}
	}
	base.DeliverPolicy, base.OptStartTime, base.OptStartSeq = jetstream.DeliverByStartSequencePolicy, nil, lo
	return base, false, nil
}

// deliver runs an ordered consumer from start and hands entries to fn.
// Without follow it stops after the entry with sequence >= last, or when
// no entry comes for ReadIdle (entries removed while being read).
func (s *Store) deliver(ctx context.Context, start jetstream.OrderedConsumerConfig, follow bool, last uint64, fn func(Entry) error) error {
	cons, err := s.stream.OrderedConsumer(ctx, start)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	for {
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if !follow {
			nctx, cancel = context.WithTimeout(ctx, s.cfg.ReadIdle)
		}
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			switch {
			case follow && ctx.Err() != nil:
				return errStop
			case ctx.Err() != nil:
				return ctx.Err()
			case !follow && nctx.Err() != nil:
				return errStop // expected entries are gone
			}
			return err
		}
		md, err := msg.Metadata()
		if err != nil {
			return err
		}
		e := Entry{Time: md.Timestamp, RequestID: msg.Headers().Get(HeaderRequestID), Data: msg.Data()}
		if err := fn(e); err != nil {
			return callbackError{err}
		}
		if !follow && md.Sequence.Stream >= last {
			return errStop
		}
	}
}
