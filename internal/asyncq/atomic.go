package asyncq

import (
	"context"
	"errors"
	"strconv"

	"github.com/nats-io/nats.go"
)

// Atomic fan-out. The dispatcher puts every event of an inbox batch on its
// function's subject of FLINT_ASYNC. With sync_always, one publish per
// event costs one fsync per event; an atomic batch publish (nats-server ≥
// 2.12, AllowAtomicPublish on the stream) stores them all with one fsync,
// all or none, and records their Nats-Msg-Ids for de-duplication as
// separate publishes would. Any error (a server without the feature, an
// id already stored because the batch is being redone, a timeout) leaves
// the caller to publish the events one by one, whose de-duplication stores
// each at most once whatever the batch did.

// JetStream's atomic batch headers.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
	// maxAtomicBatch is the server's limit of messages per atomic batch.
	maxAtomicBatch = 1000
)

// publishAtomic publishes msgs as one atomic batch and returns nil once
// the backbone acknowledged the commit. msgs get the batch headers.
func (s *Service) publishAtomic(ctx context.Context, msgs []*nats.Msg) error {
	switch {
	case len(msgs) == 0:
		return nil
	case len(msgs) > maxAtomicBatch:
		return errors.New("batch too large for an atomic publish")
	}
	nc := s.cfg.JetStream.Conn()
	id := newUUID()
	last := len(msgs) - 1
	for i, m := range msgs[:last] {
		m.Header.Set(hdrBatchID, id)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		// Staged by the server; only the commit is answered (or an
		// error, on the commit, when staging failed).
		if err := nc.PublishMsg(m); err != nil {
			return err
		}
	}
	m := msgs[last]
	m.Header.Set(hdrBatchID, id)
	m.Header.Set(hdrBatchSeq, strconv.Itoa(last+1))
	m.Header.Set(hdrBatchCommit, "1")
	_, err := s.cfg.JetStream.PublishMsg(ctx, m)
	return err
}
