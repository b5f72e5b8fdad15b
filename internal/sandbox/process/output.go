package process

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// outputCopier copies the sandbox's merged stdout/stderr pipe to
// Spec.Output. Reading a chunk from the pipe and writing it out happen
// under one lock (sem), held by the copier goroutine or by SyncOutput, so
// that when SyncOutput holds it every earlier byte is either written out
// or still in the pipe, where FIONREAD counts it.
type outputCopier struct {
	f        *os.File
	rc       syscall.RawConn
	w        io.Writer
	log      *slog.Logger
	finished chan struct{} // closed when the copier has seen EOF

	// sem is a one-slot lock (a channel so that SyncOutput can give up on
	// ctx). It guards buf, eof and werr, and w and log (set again by
	// setWriter).
	sem  chan struct{}
	buf  []byte
	eof  bool
	werr bool
}

// newOutputCopier starts copying from r (a non-blocking pipe from os.Pipe)
// to w.
func newOutputCopier(r *os.File, w io.Writer, log *slog.Logger) (*outputCopier, error) {
	if w == nil {
		w = io.Discard
	}
	rc, err := r.SyscallConn()
	if err != nil {
		return nil, err
	}
	o := &outputCopier{
		f: r, rc: rc, w: w, log: log,
		finished: make(chan struct{}), sem: make(chan struct{}, 1), buf: make([]byte, 32<<10),
	}
	go o.run()
	return o, nil
}

func (o *outputCopier) run() {
	defer close(o.finished)
	err := o.rc.Read(func(fd uintptr) bool {
		o.sem <- struct{}{}
		defer func() { <-o.sem }()
		return o.drainLocked(int(fd), -1)
	})
	if err != nil && !errors.Is(err, os.ErrClosed) {
		o.log.Warn("sandbox output copier", "err", err)
	}
	o.sem <- struct{}{}
	o.eof = true
	<-o.sem
}

// drainLocked copies what the pipe holds, at most limit bytes when limit
// is not negative. It reports whether the pipe reached EOF (or failed).
// The caller holds sem.
func (o *outputCopier) drainLocked(fd, limit int) bool {
	for i := 0; limit != 0; i++ {
		chunk := o.buf
		if limit > 0 && limit < len(chunk) {
			chunk = chunk[:limit]
		}
		n, err := unix.Read(fd, chunk)
		if n > 0 {
			if _, werr := o.w.Write(chunk[:n]); werr != nil && !o.werr {
				o.werr = true // keep draining so the runtime never blocks
				o.log.Warn("writing sandbox output", "err", werr)
			}
			if limit > 0 {
				limit -= n
			}
			continue
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			return false
		case errors.Is(err, unix.EINTR):
			continue
		}
		o.eof = true // EOF (n == 0) or a read error
		return true
	}
	return false
}

// setWriter sends what the sandbox writes from now on to w (nil discards)
// and logs copy errors to log: a pooled sandbox gets its function's Output
// at the claim.
func (o *outputCopier) setWriter(w io.Writer, log *slog.Logger) {
	if w == nil {
		w = io.Discard
	}
	o.sem <- struct{}{}
	o.w, o.log = w, log
	<-o.sem
}

// sync returns once every byte in the pipe at the time of the call has
// been written to w.
func (o *outputCopier) sync(ctx context.Context) error {
	select {
	case o.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-o.sem }()
	if o.eof {
		return nil
	}
	var ierr error
	err := o.rc.Control(func(fd uintptr) {
		var n int
		if n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ); ierr == nil && n > 0 { // TIOCINQ is FIONREAD
			o.drainLocked(int(fd), n)
		}
	})
	if err != nil {
		return err
	}
	return ierr
}
