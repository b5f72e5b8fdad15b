package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/flintdev/flint/internal/polltest"
)

// TestAsyncEventAccepted: an Event invocation is answered 202 with a request
// id, its status goes queued → running → succeeded, and its log (START, the
// function's output, END, REPORT) is readable like a synchronous one's.
// Unknown functions are refused at once with 404, payloads over 1 MB with
// 413; a payload of exactly 1 MB is accepted and runs.
func TestAsyncEventAccepted(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	c := s.lambda()
	createGoFn(t, c, "async-hello", func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(30) })

	// Ten events that each run for 1.5 s: the server runs at most 8 of a
	// function's events at once (asyncq's PerFunctionConcurrency), so some
	// must be seen waiting in the queue while others run.
	const n = 10
	ids := make([]string, n)
	start := time.Now()
	for i := range ids {
		ids[i] = invokeEvent(t, c, "async-hello", []byte(fmt.Sprintf(`{"action":"sleep","ms":1500,"name":"ev-%d"}`, i)))
	}
	t.Logf("%d Event invocations accepted in %v", n, time.Since(start))
	seen := map[string]map[string]bool{} // request id -> states observed
	for _, id := range ids {
		seen[id] = map[string]bool{}
	}
	polltest.Check(t, 90*time.Second, "every event to settle", func() error {
		pending := 0
		for _, id := range ids {
			st, err := s.asyncStatusOf(id)
			if err != nil {
				return err
			}
			seen[id][st.Status] = true
			if !asyncSettled(st) {
				pending++
			}
		}
		if pending > 0 {
			return fmt.Errorf("%d of %d events not finished", pending, n)
		}
		return nil
	})
	anyQueued := false
	for i, id := range ids {
		anyQueued = anyQueued || seen[id]["queued"]
		if !seen[id]["running"] {
			t.Errorf("event %d (%s): never seen running; states seen %v", i, id, seen[id])
		}
		st, err := s.asyncStatusOf(id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != "succeeded" || st.Attempts != 1 || st.StartedAt == nil || st.FinishedAt == nil || st.Function != "async-hello" || st.Qualifier != "$LATEST" {
			t.Errorf("event %d final status %+v, want succeeded after 1 attempt", i, *st)
			continue
		}
		if d := st.FinishedAt.Sub(*st.StartedAt); d < 1500*time.Millisecond {
			t.Errorf("event %d ran %v, but the function sleeps 1.5 s", i, d)
		}
		var reply goReply
		if err := json.Unmarshal(st.Response, &reply); err != nil || reply.RequestID != id || reply.Hello != fmt.Sprintf("ev-%d", i) {
			t.Errorf("event %d response %s (%v), want the function's reply for request %s", i, st.Response, err, id)
		}
	}
	if !anyQueued {
		t.Errorf("none of %d events of 1.5 s was ever seen queued", n)
	}

	// The logs endpoint (`flint logs`) has each async run's lines. Logs
	// are appended after the invocation returns, so poll.
	polltest.Check(t, 30*time.Second, "every event's log lines", func() error {
		logs := s.functionLogs(t, "async-hello")
		for i, id := range ids {
			for _, want := range []string{"START RequestId: " + id, "END RequestId: " + id, "REPORT RequestId: " + id, fmt.Sprintf("handled sleep for ev-%d\n", i)} {
				if !strings.Contains(logs, want) {
					return fmt.Errorf("logs lack %q", want)
				}
			}
		}
		return nil
	})

	// The same through the CLI: `flint logs`.
	out, err := exec.Command(flintBin, "logs", "async-hello", "--endpoint", s.url()).CombinedOutput()
	if err != nil {
		t.Fatalf("flint logs: %v\n%s", err, out)
	}
	for _, id := range ids {
		for _, want := range []string{"START RequestId: " + id, "END RequestId: " + id, "REPORT RequestId: " + id} {
			if !strings.Contains(string(out), want) {
				t.Errorf("flint logs output lacks %q", want)
			}
		}
	}

	// Unknown function: 404, nothing queued.
	_, err = c.Invoke(ctxT(t, 10*time.Second), &lambda.InvokeInput{
		FunctionName: aws.String("no-such-function"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`),
	})
	if !isResourceNotFound(err) || httpStatus(err) != 404 {
		t.Errorf("Event for a missing function: %v (HTTP %d), want ResourceNotFoundException 404", err, httpStatus(err))
	}

	// 1 MB + 1 byte: 413. Exactly 1 MB: accepted, and it runs.
	_, err = c.Invoke(ctxT(t, 30*time.Second), &lambda.InvokeInput{
		FunctionName: aws.String("async-hello"), InvocationType: types.InvocationTypeEvent, Payload: jsonOfSize(1048577, "too-big"),
	})
	var tooLarge smithy.APIError
	if !errors.As(err, &tooLarge) || tooLarge.ErrorCode() != "RequestEntityTooLargeException" || httpStatus(err) != 413 {
		t.Errorf("Event of 1048577 bytes: %v (HTTP %d), want RequestEntityTooLargeException 413", err, httpStatus(err))
	}
	big := jsonOfSize(1048576, "exactly-1mb")
	id := invokeEvent(t, c, "async-hello", big)
	st := s.waitAsync(t, id, 60*time.Second, asyncSettled)
	var reply goReply
	if err := json.Unmarshal(st.Response, &reply); st.Status != "succeeded" || err != nil || reply.Hello != "exactly-1mb" {
		t.Errorf("1 MB event: status %s response %.200s", st.Status, st.Response)
	}
}

// jsonOfSize returns a gofn event of exactly size bytes naming name.
func jsonOfSize(size int, name string) []byte {
	head := fmt.Sprintf(`{"name":%q,"pad":"`, name)
	const tail = `"}`
	return []byte(head + strings.Repeat("x", size-len(head)-len(tail)) + tail)
}

// httpStatus is the HTTP status of an SDK error, or 0.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
