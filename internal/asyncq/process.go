package asyncq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/nats-io/nats.go/jetstream"
)

// The life of one event. Every arrow out of "running" is recorded in the
// status record before the message is acknowledged or handed back, so a
// crash at any point leaves the message un-acknowledged and JetStream
// redelivers it after AckWait:
//
//	  Enqueue (publish acked = on disk) ──► queued
//	                                          │ delivered to a poller
//	     age > MaximumEventAgeInSeconds ◄─────┤
//	       (never run)                        ▼
//	           │                  ┌────── running ──────┐
//	           │   throttle/system│           │         │function error,
//	           │   error: Nak with│           │ok       │retries left:
//	           │   back-off 1s..5m│           │         │Nak with RetryDelays[i]
//	           │        (queued) ◄┘           │         └──► (queued)
//	           ▼                              ▼
//	       expired                        succeeded        failed (retries exhausted)
//	 (OnFailure + DLQ)                   (OnSuccess)       (OnFailure + DLQ)
//	           └──────────────┬───────────────┴───────────────┘
//	                          ▼
//	         destinations delivered, status.Delivered, Ack
//
// A redelivered event whose status is already terminal is not run again:
// only its outstanding deliveries are made before the ack.

// handle processes one delivery of an event. ictx is cancelled when the
// service gives up on running invocations (Close's deadline).
func (s *Service) handle(ictx context.Context, msg jetstream.Msg) {
	ev, err := decodeEvent(msg.Data())
	if err != nil {
		s.log.Error("dropping malformed event", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("malformed event")
		return
	}
	log := s.log.With("requestId", ev.RequestID, "function", ev.Function, "qualifier", ev.Qualifier)
	// Bookkeeping uses its own context so a shutdown does not stop an
	// outcome from being recorded.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ictx), setupTimeout)
	defer cancel()

	st, err := s.status.get(ctx, ev.RequestID)
	if err != nil {
		s.retryLater(log, msg, nil, ev, s.cfg.ThrottleBackoffMin, err)
		return
	}
	if st == nil {
		st = newStatus(ev)
	}
	if ev.PayloadRef != "" {
		data, found, err := s.large.get(ctx, ev.PayloadRef)
		if err != nil {
			s.retryLater(log, msg, nil, ev, s.cfg.ThrottleBackoffMin, err)
			return
		}
		if !found && !(st.terminal() && st.Delivered) {
			// Only the bucket's TTL removes a payload of a live event.
			log.Error("payload of queued event is gone, dropping it")
			st.Status, st.FinishedAt, st.Delivered = StateFailed, timePtr(s.cfg.Clock.Now()), true
			st.Error = &StatusError{ErrorType: lambdaerr.Service, ErrorMessage: "event payload lost"}
			_ = s.status.put(ctx, st)
			_ = msg.TermWithReason("payload lost")
			return
		}
		ev.Payload = data
	}
	cfg, err := s.configs.get(ctx, ev.Account, ev.Function, ev.Qualifier)
	if err != nil {
		s.retryLater(log, msg, nil, ev, s.cfg.ThrottleBackoffMin, err)
		return
	}
	if st.terminal() {
		if !st.Delivered {
			s.redeliver(ctx, log, msg, ev, st, cfg)
			return
		}
		s.ack(ctx, log, msg, ev)
		return
	}
	// A retry that is not due yet: JetStream does not keep a Nak's delay
	// across a restart (it redelivers after AckWait), so the schedule
	// recorded in the status record is what holds.
	if st.Status == StateQueued && st.NextAttemptAt != nil {
		if wait := st.NextAttemptAt.Sub(s.cfg.Clock.Now()); wait > 0 {
			log.Debug("redelivered before its retry is due", "wait", wait)
			if err := msg.NakWithDelay(wait); err != nil {
				log.Warn("nak", "err", err)
			}
			return
		}
	}

	fn, err := s.resolveEvent(ctx, ev)
	if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		// The function is gone (Lambda drops its queued events); so are
		// its destinations and dead-letter queue.
		log.Warn("function no longer exists, dropping event", "err", err)
		st.Status, st.FinishedAt, st.Delivered = StateFailed, timePtr(s.cfg.Clock.Now()), true
		st.Error = &StatusError{ErrorType: lambdaerr.ResourceNotFound, ErrorMessage: truncate(err.Error(), maxErrorMessageLen)}
		if err := s.status.put(ctx, st); err != nil {
			s.retryLater(log, msg, st, ev, s.cfg.ThrottleBackoffMin, err)
			return
		}
		s.ack(ctx, log, msg, ev)
		return
	}
	if err != nil {
		s.systemRetry(ctx, log, msg, ev, st, cfg, err)
		return
	}

	now := s.cfg.Clock.Now()
	if now.Sub(ev.EnqueuedAt) > cfg.maxAge() {
		oc := outcome{condition: CondEventAgeExceeded, errorCode: 429,
			errorMessage: fmt.Sprintf("event age exceeded %s", cfg.maxAge())}
		if st.Error != nil {
			oc.errorMessage = st.Error.ErrorType + ": " + st.Error.ErrorMessage
		}
		if st.FunctionError != "" {
			oc.errorCode, oc.functionError, oc.response, oc.executedVersion = 200, st.FunctionError, st.Response, st.ExecutedVersion
		}
		s.finish(ctx, log, msg, ev, st, cfg, fn, StateExpired, oc)
		return
	}

	// Run it.
	st.Status, st.Attempts, st.NextAttemptAt = StateRunning, st.Attempts+1, nil
	if st.StartedAt == nil {
		st.StartedAt = timePtr(now)
	}
	if err := s.status.put(ctx, st); err != nil {
		s.retryLater(log, msg, st, ev, s.cfg.ThrottleBackoffMin, err)
		return
	}
	log.Debug("invoking", "attempt", st.Attempts)
	res, err := s.cfg.Invoker.Invoke(ictx, fn, invocation.Request{
		RequestID: ev.RequestID, Payload: ev.Payload, ClientContext: ev.clientContext(), TraceID: ev.TraceID,
		Qualifier: ev.Qualifier, InvokedFunctionARN: ev.InvokedARN,
	})
	// The invocation may have outlived the first bookkeeping deadline.
	ctx, cancelPost := context.WithTimeout(context.WithoutCancel(ictx), setupTimeout)
	defer cancelPost()
	switch {
	case err != nil && ictx.Err() != nil:
		// Shutting down: hand the event back for another poller. The
		// attempt stays counted (it may have run partly).
		st.Status = StateQueued
		if perr := s.status.put(ctx, st); perr != nil {
			log.Warn("record status", "err", perr)
		}
		_ = msg.Nak()
	case err != nil:
		s.systemRetry(ctx, log, msg, ev, st, cfg, err)
	case res.FunctionError != "":
		st.FunctionErrors++
		st.FunctionError, st.ExecutedVersion = res.FunctionError, res.ExecutedVersion
		st.Response = jsonOrString(limitResponse(res.Payload))
		st.Error = errorOf(res.Payload, res.ErrorType)
		if st.FunctionErrors <= cfg.retries() {
			s.cfg.Observer.AsyncRetry(ev.Function, "function_error")
			s.retryLater(log, msg, st, ev, s.retryDelay(st.FunctionErrors), nil)
			return
		}
		oc := outcome{condition: CondRetriesExhausted, response: res.Payload, functionError: res.FunctionError,
			executedVersion: res.ExecutedVersion, errorCode: 200, errorMessage: st.Error.ErrorMessage}
		s.finish(ctx, log, msg, ev, st, cfg, fn, StateFailed, oc)
	default:
		st.FunctionError, st.ExecutedVersion, st.Error = "", res.ExecutedVersion, nil
		st.Response = jsonOrString(limitResponse(res.Payload))
		s.finish(ctx, log, msg, ev, st, cfg, fn, StateSucceeded,
			outcome{condition: CondSuccess, response: res.Payload, executedVersion: res.ExecutedVersion})
	}
}

// resolveEvent finds the version an event runs: the one its qualifier names
// now; through an alias, one picked by the alias's routing weights.
func (s *Service) resolveEvent(ctx context.Context, ev *event) (*metadata.Function, error) {
	fn, alias, err := s.cfg.Functions.Resolve(ctx, ev.Account, ev.Function, ev.Qualifier)
	if err != nil || alias == nil {
		return fn, err
	}
	if v := alias.PickVersion(s.cfg.Rand()); v != fn.Version {
		return s.cfg.Functions.Get(ctx, ev.Account, ev.Function, v)
	}
	return fn, nil
}

// systemRetry handles a throttle or system error: back off exponentially
// and try again until the event's age runs out.
func (s *Service) systemRetry(ctx context.Context, log logger, msg jetstream.Msg, ev *event, st *Status, cfg *EventInvokeConfig, err error) {
	st.Throttles++
	s.cfg.Observer.AsyncRetry(ev.Function, "throttle")
	le := lambdaerr.As(err)
	st.Error = &StatusError{ErrorType: le.Type, ErrorMessage: truncate(le.Message, maxErrorMessageLen)}
	delay := s.throttleDelay(st.Throttles)
	// Come back no later than the moment the event expires, so expiry
	// is reported on time.
	if left := ev.EnqueuedAt.Add(cfg.maxAge()).Sub(s.cfg.Clock.Now()); left < delay {
		delay = max(left, 0) + time.Millisecond
	}
	s.retryLater(log, msg, st, ev, delay, err)
}

// retryLater records st as queued and hands the message back to JetStream
// to be redelivered after delay. cause is logged when not nil.
func (s *Service) retryLater(log logger, msg jetstream.Msg, st *Status, ev *event, delay time.Duration, cause error) {
	if cause != nil {
		log.Info("will retry", "after", delay, "err", cause)
	}
	if st != nil {
		st.Status = StateQueued
		st.NextAttemptAt = timePtr(s.cfg.Clock.Now().Add(delay))
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := s.status.put(ctx, st); err != nil {
			log.Warn("record status", "err", err)
		}
	}
	if err := msg.NakWithDelay(delay); err != nil {
		// The message stays un-acked and comes back after AckWait.
		log.Warn("nak", "err", err)
	}
}

// finish records the terminal state, delivers destinations and acks.
func (s *Service) finish(ctx context.Context, log logger, msg jetstream.Msg, ev *event, st *Status, cfg *EventInvokeConfig, fn *metadata.Function, state string, oc outcome) {
	// With nothing to deliver, the terminal record is also the delivered
	// one: one status write (fsync) fewer per event.
	nothing := !hasDeliveries(cfg, fn.DeadLetterTargetArn, oc)
	st.Status, st.FinishedAt, st.NextAttemptAt, st.Delivered = state, timePtr(s.cfg.Clock.Now()), nil, nothing
	if state == StateExpired && st.Error == nil {
		st.Error = &StatusError{ErrorType: "EventAgeExceeded", ErrorMessage: oc.errorMessage}
	}
	if err := s.status.put(ctx, st); err != nil {
		s.retryLater(log, msg, nil, ev, s.cfg.ThrottleBackoffMin, err)
		return
	}
	if nothing {
		log.Info("async invocation finished", "status", state, "attempts", st.Attempts)
		s.ack(ctx, log, msg, ev)
		return
	}
	if err := s.deliver(ctx, ev, st, cfg, fn.DeadLetterTargetArn, oc); err != nil {
		// Status is terminal: the redelivery only retries the delivery.
		s.retryLater(log, msg, nil, ev, s.cfg.ThrottleBackoffMin, err)
		return
	}
	st.Delivered = true
	if err := s.status.put(ctx, st); err != nil {
		log.Warn("record delivered", "err", err)
	}
	log.Info("async invocation finished", "status", state, "attempts", st.Attempts)
	s.ack(ctx, log, msg, ev)
}

// redeliver finishes an event whose outcome was recorded but whose
// deliveries may not have been made (a crash between the two).
func (s *Service) redeliver(ctx context.Context, log logger, msg jetstream.Msg, ev *event, st *Status, cfg *EventInvokeConfig) {
	dlq := ""
	if st.Status != StateSucceeded {
		if fn, err := s.resolveEvent(ctx, ev); err == nil {
			dlq = fn.DeadLetterTargetArn
		} else if !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			s.retryLater(log, msg, nil, ev, s.cfg.ThrottleBackoffMin, err)
			return
		}
	}
	oc := outcome{response: st.Response, functionError: st.FunctionError, executedVersion: st.ExecutedVersion}
	switch st.Status {
	case StateSucceeded:
		oc.condition = CondSuccess
	case StateExpired:
		oc.condition, oc.errorCode = CondEventAgeExceeded, 429
	default:
		oc.condition, oc.errorCode = CondRetriesExhausted, 200
	}
	if st.Error != nil {
		oc.errorMessage = st.Error.ErrorMessage
	}
	if err := s.deliver(ctx, ev, st, cfg, dlq, oc); err != nil {
		s.retryLater(log, msg, nil, ev, s.cfg.ThrottleBackoffMin, err)
		return
	}
	st.Delivered = true
	if err := s.status.put(ctx, st); err != nil {
		log.Warn("record delivered", "err", err)
	}
	s.ack(ctx, log, msg, ev)
}

// ack acknowledges and waits for the server to confirm, so an acked event
// is really gone from the work queue; then the event's large payload, if
// any, is deleted.
func (s *Service) ack(ctx context.Context, log logger, msg jetstream.Msg, ev *event) {
	if err := msg.DoubleAck(ctx); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		// Redelivered later; the terminal status makes that a no-op.
		log.Warn("ack", "err", err)
		return
	}
	if ev.PayloadRef != "" {
		if err := s.large.delete(ctx, ev.PayloadRef); err != nil {
			log.Warn("delete payload", "err", err)
		}
	}
}

// retryDelay is the wait before retry n (1-based) after a function error.
func (s *Service) retryDelay(n int) time.Duration {
	d := s.cfg.RetryDelays
	if len(d) == 0 {
		return 0
	}
	if n > len(d) {
		n = len(d)
	}
	return d[n-1]
}

// throttleDelay is the exponential back-off after the n-th throttle or
// system error: Min·2^(n-1), capped at Max.
func (s *Service) throttleDelay(n int) time.Duration {
	d := s.cfg.ThrottleBackoffMin
	for i := 1; i < n && d < s.cfg.ThrottleBackoffMax; i++ {
		d *= 2
	}
	return min(d, s.cfg.ThrottleBackoffMax)
}

func limitResponse(b []byte) []byte {
	if len(b) > maxStoredResponse {
		return []byte(`{"flintTruncated":true}`)
	}
	return b
}

type logger = *slog.Logger
