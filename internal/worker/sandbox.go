package worker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/runtimeapi"
	"github.com/flintdev/flint/internal/sandbox"
)

// Error types the worker itself reports (errorType of the error document).
const (
	ErrorTypeTimedOut    = "Sandbox.Timedout"
	ErrorTypeExit        = "Runtime.ExitError"
	ErrorTypeOutOfMemory = "Runtime.OutOfMemory"
)

var (
	errTimedOut      = errors.New("invocation timed out")
	errRuntimeExited = errors.New("runtime exited")
)

// Sandbox is one sandbox of a Worker, serving one function version, one
// invocation at a time — or up to slots at once for a function with
// PerExecutionEnvironmentMaxConcurrency above 1 (Lambda Managed Instances,
// docs/multi-concurrency.md). Its life:
//
//	CreateSandbox ──► initialising ──(first /next)──► ready ◄──► invoking
//	                      │ init error / exit / InitTimeout      │ timeout, exit, OOM,
//	                      ▼                                      ▼ caller gone
//	                  unhealthy (first Invoke reports it) ──► destroyed
//
// Methods are safe for concurrent use; Invoke refuses a call beyond slots
// concurrent ones with ErrBusy.
type Sandbox struct {
	w   *Worker
	fn  *lambdafn.Function // private copy
	id  string
	api *runtimeapi.Server
	sb  sandbox.Sandbox // set before the Sandbox is shared
	// exited is canceled when the runtime exits (sb.Done); set with sb.
	// Invocations watch it with context.AfterFunc, not a goroutine each.
	exited    context.Context
	out       *logBuffer
	log       *slog.Logger
	createdAt time.Time
	// codeFetch and sandboxCreate are cold-start steps, set before the
	// Sandbox is shared.
	codeFetch, sandboxCreate time.Duration

	initDone chan struct{} // closed by watchInit once init has an outcome
	// Set by watchInit before initDone is closed, read-only afterwards:
	initDur  time.Duration
	initFail func(requestID string) *failure // nil when init succeeded

	gone     chan struct{} // closed by the first Destroy
	goneOnce sync.Once

	// slots is how many invocations may run at once (1, or the
	// function's PerExecutionEnvironmentMaxConcurrency).
	slots int

	mu       sync.Mutex
	healthy  bool // guarded by mu
	inflight int  // guarded by mu: Invoke and Init calls running
	invoked  bool // guarded by mu: the cold invocation (or Init) was claimed
}

// failure is an invocation outcome produced by the platform, not the
// function's handler.
type failure struct {
	errorType string
	payload   []byte // the error document
	logLine   string // written to the log before END ("" when the runtime logged it)
	keep      bool   // the sandbox lives on (a timeout in a multi-concurrent sandbox)
}

func platformFailure(errorType, message, logLine string) *failure {
	doc, _ := json.Marshal(map[string]string{"errorType": errorType, "errorMessage": message})
	return &failure{errorType: errorType, payload: doc, logLine: logLine}
}

// ID is the sandbox id (also the last part of its log stream name).
func (s *Sandbox) ID() string { return s.id }

// Timings reports the driver's named creation steps when the driver
// measures them (sandbox.StepTimer), else nil.
func (s *Sandbox) Timings() []sandbox.Step {
	if st, ok := s.sb.(sandbox.StepTimer); ok {
		return st.Timings()
	}
	return nil
}

var _ sandbox.StepTimer = (*Sandbox)(nil)

// Healthy reports whether the sandbox can take another invocation: it was
// not destroyed, did not fail or time out, and its runtime is running.
func (s *Sandbox) Healthy() bool {
	select {
	case <-s.sb.Done():
		return false
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy
}

// Destroy kills the sandbox and releases its capacity. It is idempotent
// and may run concurrently with Invoke (which then fails).
func (s *Sandbox) Destroy(ctx context.Context) error {
	s.mu.Lock()
	s.healthy = false
	s.mu.Unlock()
	s.goneOnce.Do(func() { close(s.gone) })
	s.api.Close()
	err := s.sb.Destroy(ctx)
	s.w.release(s.id, s.fn.MemorySize)
	if err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", s.id, err)
	}
	return nil
}

// kill marks the sandbox unhealthy and destroys it, bounded in time.
func (s *Sandbox) kill(reason string) {
	s.log.Info("destroying sandbox", "reason", reason)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Destroy(ctx); err != nil {
		s.log.Warn("destroy sandbox", "err", err)
	}
}

// watchInit waits for the runtime's init to end and records how it ended.
func (s *Sandbox) watchInit(timeout time.Duration) {
	defer close(s.initDone)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	initFailed := func() {
		doc, raw := s.api.InitError()
		s.initFail = func(string) *failure { return &failure{errorType: doc.ErrorType, payload: raw} }
	}
	select {
	case <-s.api.Ready():
		s.initDur = s.api.ReadyAt().Sub(s.createdAt)
		return
	case <-s.api.InitFailed():
		initFailed()
	case <-s.sb.Done():
		select {
		case <-s.api.InitFailed(): // posted just before exiting
			initFailed()
		default:
			err := s.sb.Err()
			s.initFail = func(id string) *failure { return exitFailure(id, err) }
		}
	case <-timer.C:
		s.initFail = func(id string) *failure {
			msg := fmt.Sprintf("RequestId: %s Error: Init timed out after %s seconds", id, seconds(timeout))
			return platformFailure(ErrorTypeTimedOut, msg, msg)
		}
	case <-s.gone:
		s.initFail = func(id string) *failure {
			return platformFailure(ErrorTypeExit, "RequestId: "+id+" Error: sandbox destroyed during init", "")
		}
	}
	s.initDur = s.w.cfg.Clock().Sub(s.createdAt)
}

// exitFailure describes a runtime that exited with err (sandbox.Err).
func exitFailure(id string, err error) *failure {
	if errors.Is(err, sandbox.ErrOutOfMemory) {
		msg := fmt.Sprintf("RequestId: %s Error: Runtime exited with error: signal: killed", id)
		return platformFailure(ErrorTypeOutOfMemory, msg, msg+"\n"+ErrorTypeOutOfMemory)
	}
	msg := fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %s", id, exitReason(err))
	if err == nil {
		msg = fmt.Sprintf("RequestId: %s Error: Runtime exited without providing a reason", id)
	}
	return platformFailure(ErrorTypeExit, msg, msg+"\n"+ErrorTypeExit)
}

// exitReason extracts "exit status N" / "signal: X" from a sandbox error.
func exitReason(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.String()
	}
	if err == nil {
		return "unknown"
	}
	text := err.Error()
	for _, marker := range []string{"exit status ", "signal: "} {
		if i := strings.LastIndex(text, marker); i >= 0 {
			return strings.TrimRight(text[i:], ")")
		}
	}
	return text
}

// Invoke runs one invocation. The first Invoke waits for the runtime's init
// (its wait is Result.InitDuration); an init failure, a timeout, the
// runtime exiting or running out of memory come back as a Result with
// FunctionError "Unhandled" and leave the sandbox destroyed. The function's
// own errors come back as a Result too and keep the sandbox.
//
// ctx is the caller's: if it ends before the function answers (the client
// hung up), the sandbox is destroyed as on a timeout — a runtime cannot be
// interrupted mid-event, and a Lambda sandbox is never shared by two
// invocations at once — and Invoke returns an error wrapping ctx's.
// Invoke returns ErrBusy or ErrUnhealthy (wrapped) when it could not run
// the invocation at all — including when the runtime turned out to be dead
// before it took the event — so the caller may retry on another sandbox;
// ErrUnhealthy errors also wrap invocation.ErrNotDelivered.
func (s *Sandbox) Invoke(ctx context.Context, req invocation.Request) (invocation.Result, error) {
	return s.invoke(ctx, req, nil)
}

// InvokeStream is Invoke for a response that the caller takes as a stream
// (workermanager.Streamer): a successful response's body goes to stream as
// the runtime sends it (runtimeapi.Server.DispatchStream) and
// Result.Payload stays empty; errors come back in the Result as for Invoke.
func (s *Sandbox) InvokeStream(ctx context.Context, req invocation.Request, stream invocation.Stream) (invocation.Result, error) {
	return s.invoke(ctx, req, stream)
}

// claim takes an invocation slot; cold reports that the call is the
// sandbox's first (it reports the init). ok is false when every slot is
// taken.
func (s *Sandbox) claim() (cold, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight >= s.slots {
		return false, false
	}
	s.inflight++
	cold, s.invoked = !s.invoked, true
	return cold, true
}

// endSlot gives back a slot taken by claim; unclaimCold also hands the
// cold invocation on to the next call (the first one gave up waiting for
// init).
func (s *Sandbox) endSlot(unclaimCold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if unclaimCold {
		s.invoked = false
	}
}

func (s *Sandbox) invoke(ctx context.Context, req invocation.Request, stream invocation.Stream) (invocation.Result, error) {
	cold, ok := s.claim()
	if !ok {
		return invocation.Result{}, fmt.Errorf("invoke %s on sandbox %s: %w", req.RequestID, s.id, ErrBusy)
	}
	unclaim := false
	defer func() { s.endSlot(unclaim) }()
	// A sandbox whose runtime died during init is reported by the cold
	// invocation below (initFail), not refused here.
	if !cold && !s.Healthy() {
		s.kill("invoked while unhealthy") // frees its capacity; idempotent
		return invocation.Result{}, fmt.Errorf("invoke %s on sandbox %s: %w (%w)", req.RequestID, s.id, ErrUnhealthy, invocation.ErrNotDelivered)
	}
	if req.TraceID == "" {
		req.TraceID = newTraceID(s.w.cfg.Clock())
	}
	res := invocation.Result{RequestID: req.RequestID, ExecutedVersion: s.fn.Version, SandboxID: s.id}
	if res.ExecutedVersion == "" {
		res.ExecutedVersion = lambdafn.LatestVersion
	}
	// Every call waits for init: in a multi-concurrent sandbox others may
	// join the cold one while the runtime still initialises.
	select {
	case <-s.initDone:
	case <-ctx.Done():
		unclaim = cold
		return invocation.Result{}, fmt.Errorf("invoke %s: waiting for init of sandbox %s: %w", req.RequestID, s.id, ctx.Err())
	}
	if cold {
		res.ColdStart, res.InitDuration = true, s.initDur
		res.Cold = &invocation.ColdSteps{CodeFetch: s.codeFetch, SandboxCreate: s.sandboxCreate,
			RuntimeInit: max(s.initDur-s.sandboxCreate, 0)}
	}
	f := &frame{}
	if s.initFail != nil {
		if !cold { // the cold invocation reports the failure
			s.kill("init failed")
			return invocation.Result{}, fmt.Errorf("invoke %s on sandbox %s: init failed: %w (%w)", req.RequestID, s.id, ErrUnhealthy, invocation.ErrNotDelivered)
		}
		fail := s.initFail(req.RequestID)
		s.syncOutput()
		s.out.moveTo(f)
		f.start(req.RequestID, res.ExecutedVersion)
		s.finishFailed(f, &res, fail, 0)
		s.logFor(req.RequestID).Info("init failed", "error_type", fail.errorType)
		return res, nil
	}

	if res.ColdStart {
		// What the runtime printed during init precedes START.
		s.syncOutput()
	}
	s.out.moveTo(f) // init output, or output between invocations
	f.start(req.RequestID, res.ExecutedVersion)
	timeout := time.Duration(s.fn.Timeout) * time.Second
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	start := s.w.cfg.Clock()
	// One context ends the dispatch with its cause: the timeout (a timer,
	// not a second context per invocation), the runtime's exit, or ctx.
	dctx, cancel := context.WithCancelCause(ctx)
	deadline := time.AfterFunc(timeout, func() { cancel(errTimedOut) })
	stopWatch := context.AfterFunc(s.exited, func() { cancel(errRuntimeExited) })
	var out runtimeapi.Outcome
	var err error
	if stream != nil {
		out, err = s.api.DispatchStream(dctx, req, start.Add(timeout), stream)
	} else {
		out, err = s.api.Dispatch(dctx, req, start.Add(timeout))
	}
	stopWatch()
	deadline.Stop()
	cancel(nil)
	res.Duration = s.w.cfg.Clock().Sub(start)

	var fail *failure
	switch {
	case err == nil:
		res.Payload = out.Payload
		if out.Err != nil {
			res.FunctionError, res.ErrorType = invocation.ErrorUnhandled, out.Err.ErrorType
		}
	case errors.Is(err, errTimedOut):
		msg := fmt.Sprintf("Task timed out after %s seconds", seconds(timeout))
		fail = platformFailure(ErrorTypeTimedOut, "RequestId: "+req.RequestID+" Error: "+msg,
			timestamp(s.w.cfg.Clock())+" "+req.RequestID+" "+msg)
		// A multi-concurrent sandbox keeps running, as Lambda Managed
		// Instances do: the timeout ends this invocation only (the
		// runtime's late answer is dropped, runtimeapi.Server.late).
		fail.keep = s.slots > 1
	case errors.Is(err, errRuntimeExited) && errors.Is(err, runtimeapi.ErrUndelivered):
		// The runtime died (e.g. right after its previous answer) before
		// taking this event: the function never saw it.
		s.kill("runtime exited before taking the event")
		return invocation.Result{}, fmt.Errorf("invoke %s on sandbox %s: %w: %w (%w)", req.RequestID, s.id, ErrUnhealthy, err, invocation.ErrNotDelivered)
	case errors.Is(err, errRuntimeExited):
		fail = exitFailure(req.RequestID, s.sb.Err())
	default: // the caller went away, or the sandbox was destroyed under us
		s.kill("invocation abandoned: " + err.Error())
		return invocation.Result{}, fmt.Errorf("invoke %s on sandbox %s: %w", req.RequestID, s.id, err)
	}
	if fail != nil {
		s.syncOutput()
		s.out.moveTo(f)
		s.finishFailed(f, &res, fail, res.Duration)
		s.logFor(req.RequestID).Info("invocation failed", "error_type", fail.errorType)
		return res, nil
	}
	s.syncOutput()
	s.out.moveTo(f)
	f.end(req.RequestID)
	res.MemoryUsedBytes = s.maxMemory()
	f.report(req.RequestID, res.Duration, s.fn.MemorySize, res.MemoryUsedBytes, res.InitDuration)
	res.Log = f.Bytes()
	s.appendLog(req.RequestID, res.Log)
	return res, nil
}

// finishFailed completes res for a platform failure and destroys the
// sandbox (unless fail.keep).
func (s *Sandbox) finishFailed(f *frame, res *invocation.Result, fail *failure, dur time.Duration) {
	if fail.logLine != "" {
		f.line(fail.logLine)
	}
	f.end(res.RequestID)
	maxMem := s.maxMemory()
	if !fail.keep {
		s.kill(fail.errorType)
	}
	res.MemoryUsedBytes = maxMem
	f.report(res.RequestID, dur, s.fn.MemorySize, maxMem, res.InitDuration)
	res.Payload, res.FunctionError, res.ErrorType = fail.payload, invocation.ErrorUnhandled, fail.errorType
	res.Log = f.Bytes()
	s.appendLog(res.RequestID, res.Log)
}

func (s *Sandbox) maxMemory() uint64 {
	if pm, ok := s.sb.(sandbox.PeakMemoryReader); ok {
		v, err := pm.MaxMemoryBytes()
		if err != nil {
			return 0
		}
		return v
	}
	st, err := s.sb.Stats()
	if err != nil {
		return 0
	}
	return st.MaxMemoryBytes
}

// syncOutput waits (briefly) until the runtime's output so far is in s.out.
func (s *Sandbox) syncOutput() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.sb.SyncOutput(ctx); err != nil {
		s.log.Debug("sync output", "err", err)
	}
}

// appendLog hands the framed log to the log store. It runs on the
// invocation's own goroutine, not one of its own: the store queues the
// entry (group commit) and blocks only while its queue is full, for a
// bounded time (logstore.Config.StallWait, as for the invocation record),
// and a goroutine per invocation cost a thread wake-up each. Worker.Close
// waits for appends in progress.
func (s *Sandbox) appendLog(requestID string, data []byte) {
	sink := s.w.cfg.Logs
	if sink == nil {
		return
	}
	s.w.logsWG.Add(1)
	defer s.w.logsWG.Done()
	if err := sink.Append(context.Background(), s.fn.Account, s.fn.Name, requestID, data); err != nil {
		s.log.Warn("append log", "request_id", requestID, "err", err)
	}
}

// logFor is the sandbox's logger with the request ID, built only when
// something is logged.
func (s *Sandbox) logFor(requestID string) *slog.Logger {
	return s.log.With("request_id", requestID)
}

// newTraceID makes an X-Ray style trace header for an invocation that came
// without one, as Lambda always passes one to the runtime.
func newTraceID(now time.Time) string {
	var b [20]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return fmt.Sprintf("Root=1-%08x-%x;Parent=%x;Sampled=0", now.Unix(), b[:12], b[12:])
}

// Init runs the runtime's init phase ahead of any invocation, for
// provisioned concurrency: it returns once the runtime asked for its first
// event, and the first Invoke then reports no Init Duration (init output
// still precedes its START line). An init failure destroys the sandbox and
// comes back as the error. Init after the first invocation is a no-op.
func (s *Sandbox) Init(ctx context.Context) error {
	cold, ok := s.claim()
	if !ok {
		return fmt.Errorf("init sandbox %s: %w", s.id, ErrBusy)
	}
	if !cold {
		s.endSlot(false)
		return nil
	}
	select {
	case <-s.initDone:
	case <-ctx.Done():
		s.endSlot(true)
		return fmt.Errorf("init sandbox %s: %w", s.id, ctx.Err())
	}
	s.endSlot(false)
	if s.initFail != nil {
		fail := s.initFail("")
		s.kill("init failed")
		return fmt.Errorf("init sandbox %s: %s: %s", s.id, fail.errorType, fail.payload)
	}
	return nil
}
