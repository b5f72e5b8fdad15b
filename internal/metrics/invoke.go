package metrics

import (
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
)

// timedOut is the errorType the worker reports for a function timeout.
const timedOut = "Sandbox.Timedout"

// Invocation is one invocation being observed: Start returns it, End
// records its outcome. It is a small value (no allocation).
type Invocation struct {
	f *fnMetrics
}

// Start counts an invocation of function version as running. Call End
// exactly once when it is over.
func (m *Metrics) Start(function, version string) Invocation {
	f := m.function(function, version)
	f.concurrent.Inc()
	return Invocation{f}
}

// End records the outcome of an invocation: the result and error of the
// Worker Manager's Invoke.
func (i Invocation) End(res *invocation.Result, err error) {
	f := i.f
	f.concurrent.Dec()
	if err != nil {
		if lambdaerr.Is(err, lambdaerr.TooManyRequests) {
			f.outcome[iThrottle].Inc()
		} else {
			f.outcome[iError].Inc()
		}
		return
	}
	f.outcome[outcomeIndex(res)].Inc()
	f.duration.Observe(res.Duration.Seconds())
	if res.MemoryUsedBytes > 0 {
		f.memoryUsed.Observe(float64(res.MemoryUsedBytes))
	}
	if res.ColdStart {
		f.coldStarts.Inc()
		if res.InitDuration > 0 {
			f.initDuration.Observe(res.InitDuration.Seconds())
		}
		if c := res.Cold; c != nil {
			f.steps[0].Observe(c.Placement.Seconds())
			f.steps[1].Observe(c.CodeFetch.Seconds())
			f.steps[2].Observe(c.SandboxCreate.Seconds())
			f.steps[3].Observe(c.RuntimeInit.Seconds())
		}
	}
}

func outcomeIndex(res *invocation.Result) int {
	switch {
	case res.FunctionError == "":
		return iSuccess
	case res.ErrorType == timedOut:
		return iTimeout
	}
	return iFunctionError
}

// Outcome classifies an invocation that ran: OutcomeSuccess,
// OutcomeFunctionError or OutcomeTimeout.
func Outcome(res *invocation.Result) string { return outcomes[outcomeIndex(res)] }
