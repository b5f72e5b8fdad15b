package logstore

import (
	"encoding/binary"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// A stored message holds either one entry (the format before batching) or
// a batch of entries of one function.
//
// Old format (no HeaderFormat): the payload is the entry's log, the
// request ID is in HeaderRequestID and the entry's time is the message's
// store time.
//
// Batch format (HeaderFormat "batch1"; HeaderEntries is the entry count):
// the payload is the entries, oldest first, each as
//
//	varint    time (Unix nanoseconds, when it was appended)
//	uvarint   length of the request ID, then its bytes
//	uvarint   length of the log, then its bytes
//
// with nothing after the last entry.
const (
	// HeaderFormat names a message's format; absent for single entries.
	HeaderFormat = "Flint-Log-Format"
	// HeaderEntries holds the number of entries in a batch message.
	HeaderEntries = "Flint-Log-Entries"
	// formatBatch1 is the only batch format so far.
	formatBatch1 = "batch1"
)

// maxRequestIDBytes bounds a stored request ID (Lambda's are 36 bytes).
const maxRequestIDBytes = 1024

// frameOverhead bounds the bytes a frame adds to its request ID and log.
const frameOverhead = 3 * binary.MaxVarintLen64

// appendFrame appends one entry's frame to buf.
func appendFrame(buf []byte, t time.Time, requestID string, data []byte) []byte {
	buf = binary.AppendVarint(buf, t.UnixNano())
	buf = binary.AppendUvarint(buf, uint64(len(requestID)))
	buf = append(buf, requestID...)
	buf = binary.AppendUvarint(buf, uint64(len(data)))
	return append(buf, data...)
}

var errBadFrame = errors.New("logstore: malformed batch")

// decodeBatch calls fn for each entry of a batch payload, in order. The
// entries' Data alias payload (capped, so appending to one copies). It
// stops at fn's first error and returns it, or errBadFrame at the first
// malformed frame (the entries before it were delivered).
func decodeBatch(payload []byte, fn func(Entry) error) error {
	for len(payload) > 0 {
		ns, n := binary.Varint(payload)
		if n <= 0 {
			return errBadFrame
		}
		payload = payload[n:]
		idLen, n := binary.Uvarint(payload)
		if n <= 0 || idLen > uint64(len(payload)-n) {
			return errBadFrame
		}
		id := string(payload[n : n+int(idLen)])
		payload = payload[n+int(idLen):]
		dataLen, n := binary.Uvarint(payload)
		if n <= 0 || dataLen > uint64(len(payload)-n) {
			return errBadFrame
		}
		end := n + int(dataLen)
		e := Entry{Time: time.Unix(0, ns), RequestID: id, Data: payload[n:end:end]}
		payload = payload[end:]
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// entryCount is the number of entries a message holds according to its
// headers: HeaderEntries for a batch, 1 for an old single entry, 0 for a
// format this version does not know (such a message is skipped).
func entryCount(h nats.Header) int {
	switch h.Get(HeaderFormat) {
	case "":
		return 1
	case formatBatch1:
		n, err := strconv.Atoi(h.Get(HeaderEntries))
		if err != nil || n < 0 {
			return 0
		}
		return n
	default:
		return 0
	}
}
