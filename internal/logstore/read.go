package logstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-io/nats.go/jetstream"
)

// ReadOptions select which entries Read delivers.
type ReadOptions struct {
	// Since, when set, skips entries stored before it.
	Since time.Time
	// Tail, when > 0, delivers only the last Tail entries (of those at or
	// after Since) stored when Read starts. Entries still queued in a
	// Store's writer (up to BatchDelay old) are not stored yet.
	Tail int
	// Follow keeps delivering new entries, as they are stored, until ctx
	// is done.
	Follow bool
}

// sinceSlack is how much earlier than ReadOptions.Since reading starts,
// by message store time: an entry's time is its append time, taken on the
// appending host, which may run a little ahead of the server's clock. The
// entries themselves are filtered exactly.
const sinceSlack = 2 * time.Second

// Read delivers a function's log entries to fn, oldest first, one at a
// time from the calling goroutine. Without Follow it returns nil after
// delivering the entries stored when it started; with Follow it keeps
// delivering new entries and returns nil when ctx is done. An error from
// fn stops Read and is returned as is. Entries of other functions never
// appear. Read may be called concurrently with Append and other Reads.
// Both message formats (single entries and batches) are read.
func (s *Store) Read(ctx context.Context, account, function string, opts ReadOptions, fn func(Entry) error) error {
	subj, err := subject(account, function)
	if err != nil {
		return err
	}
	return s.read(ctx, subj, account, function, opts, fn)
}

// ReadRecords delivers a function's invocation records (AppendRecord) as
// Read delivers its logs.
func (s *Store) ReadRecords(ctx context.Context, account, function string, opts ReadOptions, fn func(Entry) error) error {
	subj, err := subject(account, function)
	if err != nil {
		return err
	}
	return s.read(ctx, subj+recordsSuffix, account, function, opts, fn)
}

func (s *Store) read(ctx context.Context, subj, account, function string, opts ReadOptions, fn func(Entry) error) error {
	last, lastTime, err := s.lastOf(ctx, subj)
	if err != nil {
		return fmt.Errorf("logstore: read %s/%s: %w", account, function, err)
	}
	if !opts.Follow && (last == 0 || !opts.Since.IsZero() && lastTime.Add(sinceSlack).Before(opts.Since)) {
		return nil // nothing stored that matches
	}
	pos := position{cfg: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}}
	if !opts.Since.IsZero() {
		from := opts.Since.Add(-sinceSlack)
		pos.cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		pos.cfg.OptStartTime = &from
	}
	if opts.Tail > 0 {
		var none bool
		pos, none, err = s.tailStart(ctx, subj, uint64(opts.Tail), last)
		if err != nil {
			return fmt.Errorf("logstore: read %s/%s: %w", account, function, err)
		}
		if none && !opts.Follow {
			return nil
		}
	}
	if err := s.deliver(ctx, pos, opts, last, fn); err != nil {
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

// position is where deliver starts: a consumer start, and a number of
// entries to skip in the message with sequence skipSeq (a tail starting
// inside a batch).
type position struct {
	cfg     jetstream.OrderedConsumerConfig
	skipSeq uint64
	skip    int
}

// errStop ends deliver normally.
var errStop = errors.New("stop")

// callbackError marks an error returned by Read's fn, to return it as is.
type callbackError struct{ err error }

func (c callbackError) Error() string { return c.err.Error() }

// lastOf returns the sequence and store time of the last message on subj,
// 0 when there is none.
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

// pendingFrom counts the messages on subj at or after sequence seq, using
// a short-lived ephemeral consumer that never delivers anything.
func (s *Store) pendingFrom(ctx context.Context, subj string, seq uint64) (uint64, error) {
	c, err := s.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     subj,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       seq,
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

// fromSeq is a consumer start at sequence seq on subj.
func fromSeq(subj string, seq uint64) jetstream.OrderedConsumerConfig {
	return jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    seq,
	}
}

// tailStart returns where to start to deliver the last n entries of subj,
// whose last message has sequence last. Every message holds at least one
// entry, so the last n messages hold at least n entries: it finds the
// sequence S with exactly n messages at or after it (counting them, and
// when there are more than n binary-searching S, each probe one ephemeral
// consumer, at most ~64, no message transferred), then reads only the
// headers of the messages from S to add up their entry counts from the
// end. When nothing is stored it reports none and starts after last (for
// following).
//
// Entries at or after a time are a suffix (times grow with sequences), so
// the last n entries at or after Since are the last n entries filtered by
// time, which deliver does.
func (s *Store) tailStart(ctx context.Context, subj string, n, last uint64) (pos position, none bool, err error) {
	total, err := s.pendingFrom(ctx, subj, 1)
	if err != nil {
		return pos, false, err
	}
	if total == 0 {
		return position{cfg: fromSeq(subj, last+1)}, true, nil
	}
	lo := uint64(1)
	if total > n {
		// countFrom(seq) is non-increasing in seq and drops by at most
		// one per step; countFrom(lo) >= n > countFrom(hi) throughout.
		hi := last + 1
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			c, err := s.pendingFrom(ctx, subj, mid)
			if err != nil {
				return pos, false, err
			}
			if c >= n {
				lo = mid
			} else {
				hi = mid
			}
		}
	}
	counts, err := s.entryCounts(ctx, subj, lo, last)
	if err != nil {
		return pos, false, err
	}
	if len(counts) == 0 { // removed meanwhile
		return position{cfg: fromSeq(subj, last+1)}, true, nil
	}
	acc := uint64(0)
	for i := len(counts) - 1; i >= 0; i-- {
		acc += uint64(counts[i].n)
		if acc >= n {
			return position{cfg: fromSeq(subj, counts[i].seq), skipSeq: counts[i].seq, skip: int(acc - n)}, false, nil
		}
	}
	return position{cfg: fromSeq(subj, counts[0].seq)}, false, nil
}

// seqCount is a message's sequence and its number of entries.
type seqCount struct {
	seq uint64
	n   int
}

// entryCounts reads the headers (only) of subj's messages from sequence
// from to last and returns their entry counts, oldest first. Messages
// removed meanwhile are missing; it gives up waiting after ReadIdle.
func (s *Store) entryCounts(ctx context.Context, subj string, from, last uint64) ([]seqCount, error) {
	cfg := fromSeq(subj, from)
	cfg.HeadersOnly = true
	var out []seqCount
	err := s.each(ctx, cfg, false, last, func(msg jetstream.Msg, md *jetstream.MsgMetadata) error {
		out = append(out, seqCount{seq: md.Sequence.Stream, n: entryCount(msg.Headers())})
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return out, nil
}

// each runs an ordered consumer from cfg and calls fn for each message.
// Without follow it stops (with errStop) after the message with sequence
// >= last, or when no message comes for ReadIdle (messages removed while
// being read); with follow it stops with errStop when ctx is done.
func (s *Store) each(ctx context.Context, cfg jetstream.OrderedConsumerConfig, follow bool, last uint64, fn func(jetstream.Msg, *jetstream.MsgMetadata) error) error {
	cons, err := s.stream.OrderedConsumer(ctx, cfg)
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
				return errStop // expected messages are gone
			}
			return err
		}
		md, err := msg.Metadata()
		if err != nil {
			return err
		}
		if err := fn(msg, md); err != nil {
			return err
		}
		if !follow && md.Sequence.Stream >= last {
			return errStop
		}
	}
}

// deliver unpacks the messages from pos and hands their entries at or
// after opts.Since to fn (its errors wrapped in callbackError).
func (s *Store) deliver(ctx context.Context, pos position, opts ReadOptions, last uint64, fn func(Entry) error) error {
	return s.each(ctx, pos.cfg, opts.Follow, last, func(msg jetstream.Msg, md *jetstream.MsgMetadata) error {
		skip := 0
		if md.Sequence.Stream == pos.skipSeq {
			skip = pos.skip
		}
		emit := func(e Entry) error {
			if skip > 0 {
				skip--
				return nil
			}
			if !opts.Since.IsZero() && e.Time.Before(opts.Since) {
				return nil
			}
			if err := fn(e); err != nil {
				return callbackError{err}
			}
			return nil
		}
		return s.unpack(msg.Subject(), md, msg.Headers(), msg.Data(), emit)
	})
}

// unpack calls emit for each entry of one stored message, of either
// format. A malformed batch or an unknown format is logged and skipped
// (after the entries before the damage); emit's error is returned.
func (s *Store) unpack(subj string, md *jetstream.MsgMetadata, h nats.Header, data []byte, emit func(Entry) error) error {
	switch f := h.Get(HeaderFormat); f {
	case "":
		return emit(Entry{Time: md.Timestamp, RequestID: h.Get(HeaderRequestID), Data: data})
	case formatBatch1:
		err := decodeBatch(data, emit)
		if errors.Is(err, errBadFrame) {
			s.log.Warn("malformed function log batch skipped", "subject", subj, "seq", md.Sequence.Stream)
			return nil
		}
		return err
	default:
		s.log.Warn("function log message of unknown format skipped", "subject", subj, "seq", md.Sequence.Stream, "format", f)
		return nil
	}
}
