package frontend

import (
	"context"
	"errors"
	"time"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// A function's state, as Lambda's (State and LastUpdateStatus of $LATEST):
//
//	CreateFunction ──► Pending (StateReasonCode Creating) ──prepared──► Active
//	                          │ preparation failed
//	                          ▼
//	                       Failed (InternalError)
//
//	UpdateFunctionCode / UpdateFunctionConfiguration (State unchanged):
//	    LastUpdateStatus InProgress ──prepared──► Successful
//	                          │ preparation failed
//	                          ▼
//	                       Failed (InternalError)
//
// Preparing is Config.Preparer's Prepare (unpacking the code on a worker
// host), run in the background by the frontend that made the change, then
// recorded with a write conditional on the revision it prepared: a newer
// change has its own preparation, so a stale one records nothing.
// Preparations a stopped process left unfinished are resumed by Restore.
// Published versions are snapshots of stored code and are Active at once.
//
// Invocations of a Pending function wait for it (bounded by
// pendingInvokeWait) instead of failing at once with Lambda's
// ResourceConflictException: clients that invoke right after
// CreateFunction without a waiter keep working, and those that use the
// waiters see Lambda's states.

// Preparer makes a function's code ready to run before its state says so.
type Preparer interface {
	// Prepare readies fn's code (e.g. unpacks it on a worker host). It is
	// called once per change of $LATEST, in the background. An error that
	// is a *lambdaerr.Error is about the function's code and marks the
	// change Failed; any other error (a full disk, an unavailable store) is
	// the platform's: the change becomes ready anyway, and the code is
	// prepared at the first cold start, which reports such errors itself.
	Prepare(ctx context.Context, fn *metadata.Function) error
}

const (
	// prepareTimeout bounds one preparation.
	prepareTimeout = 5 * time.Minute
	// pendingInvokeWait bounds how long an invocation waits for a Pending
	// function.
	pendingInvokeWait = 30 * time.Second
)

func markCreating(f *metadata.Function) {
	f.State, f.StateReason = "Pending", "The function is being created."
	f.LastUpdateStatus, f.LastUpdateStatusReason = "", ""
}

func markUpdating(f *metadata.Function) {
	if f.State == "" {
		f.State = "Active"
	}
	f.LastUpdateStatus, f.LastUpdateStatusReason = "InProgress", "The function is being updated."
}

func markReady(f *metadata.Function) {
	f.State, f.StateReason = "Active", ""
	f.LastUpdateStatus, f.LastUpdateStatusReason = "Successful", ""
}

func markFailed(f *metadata.Function, why string) {
	if f.State == "Pending" {
		f.State, f.StateReason = "Failed", why
	}
	f.LastUpdateStatus, f.LastUpdateStatusReason = "Failed", why
}

// needsPreparation reports whether f is waiting for its preparation.
func needsPreparation(f *metadata.Function) bool {
	return f.State == "Pending" || f.LastUpdateStatus == "InProgress"
}

var errStalePreparation = errors.New("frontend: function changed since this preparation started")

// prepareLater prepares the revision f of $LATEST in the background and
// records the outcome. Close waits for it.
func (h *Handler) prepareLater(f *metadata.Function) {
	fn := *f
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		h.prepare(&fn)
	}()
}

func (h *Handler) prepare(fn *metadata.Function) {
	ctx, cancel := context.WithTimeout(h.lifetime, prepareTimeout)
	defer cancel()
	var perr error
	if h.cfg.Preparer != nil {
		perr = h.cfg.Preparer.Prepare(ctx, fn)
	}
	if perr != nil && h.lifetime.Err() != nil {
		return // shutting down: Restore resumes it
	}
	// Only a fault of the code itself (a Lambda error the client caused)
	// fails the function; the platform's own (a full disk, the backbone:
	// a ServiceException) leaves it to the first cold start.
	var le *lambdaerr.Error
	if perr != nil && (!errors.As(perr, &le) || le.Type == lambdaerr.Service) {
		h.log.Warn("preparing function code failed; it is prepared at its first cold start instead",
			"function", fn.Name, "revision", fn.RevisionID, "err", perr)
		perr = nil
	}
	_, err := h.cfg.Functions.Modify(ctx, fn.Account, fn.Name, metadata.LatestVersion, func(cur *metadata.Function) error {
		if cur.RevisionID != fn.RevisionID || !needsPreparation(cur) {
			return errStalePreparation
		}
		if perr != nil {
			markFailed(cur, "The function could not be prepared: "+lambdaerr.As(perr).Message)
		} else {
			markReady(cur)
		}
		return nil
	})
	switch {
	case errors.Is(err, errStalePreparation), lambdaerr.Is(err, lambdaerr.ResourceNotFound):
	case err != nil:
		h.log.Warn("record function state", "function", fn.Name, "revision", fn.RevisionID, "err", err)
	case perr != nil:
		h.log.Error("function preparation failed", "function", fn.Name, "revision", fn.RevisionID, "err", perr)
	default:
		h.log.Debug("function ready", "function", fn.Name, "revision", fn.RevisionID)
	}
}

// resumePreparations restarts the preparations of $LATEST functions (of
// every account) that a stopped process left unfinished.
func (h *Handler) resumePreparations(ctx context.Context) error {
	accounts, err := h.cfg.Functions.Accounts(ctx)
	if err != nil {
		return err
	}
	n := 0
	for _, account := range accounts {
		marker := ""
		for {
			fs, next, err := h.cfg.Functions.List(ctx, account, marker, 1000)
			if err != nil {
				return err
			}
			for _, f := range fs {
				if needsPreparation(f) {
					h.prepareLater(f)
					n++
				}
			}
			if next == "" {
				break
			}
			marker = next
		}
	}
	if n > 0 {
		h.log.Info("resumed function preparations", "count", n)
	}
	return nil
}

// waitReady returns fn, or when fn is a Pending $LATEST, fn once its
// preparation has ended (bounded by pendingInvokeWait and ctx).
func (h *Handler) waitReady(ctx context.Context, fn *metadata.Function) (*metadata.Function, error) {
	if fn.State != "Pending" {
		return fn, nil
	}
	ctx, cancel := context.WithTimeout(ctx, pendingInvokeWait)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for fn.State == "Pending" {
		select {
		case <-ctx.Done():
			return fn, nil // checkActive answers Lambda's conflict
		case <-t.C:
		}
		cur, err := h.cfg.Functions.Get(ctx, fn.Account, fn.Name, fn.Version)
		if err != nil {
			return nil, err
		}
		fn = cur
	}
	return fn, nil
}

// Close stops the background preparations (Restore resumes what is left)
// and waits for them, bounded by ctx.
func (h *Handler) Close(ctx context.Context) error {
	h.stop()
	done := make(chan struct{})
	go func() { h.bg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
