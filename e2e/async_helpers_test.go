package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/flintdev/flint/internal/polltest"
)

// Helpers for the asynchronous-invocation tests (async_*_test.go). They
// speak Flint's HTTP extensions directly (status records, queues, logs), as
// `flint` the CLI does, so what they check is the wire format.

// asyncStatus is the body of GET /flint/v1/invocations/{requestId}.
type asyncStatus struct {
	RequestID      string          `json:"requestId"`
	Function       string          `json:"function"`
	Qualifier      string          `json:"qualifier"`
	Status         string          `json:"status"`
	Attempts       int             `json:"attempts"`
	EnqueuedAt     time.Time       `json:"enqueuedAt"`
	StartedAt      *time.Time      `json:"startedAt"`
	FinishedAt     *time.Time      `json:"finishedAt"`
	NextAttemptAt  *time.Time      `json:"nextAttemptAt"`
	Response       json.RawMessage `json:"response"`
	FunctionErrors int             `json:"functionErrors"`
	Throttles      int             `json:"throttles"`
	FunctionError  string          `json:"functionError"`
	Delivered      bool            `json:"delivered"`
	Error          *struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	} `json:"error"`
}

func (st *asyncStatus) terminal() bool {
	return st.Status == "succeeded" || st.Status == "failed" || st.Status == "expired"
}

// queueMessage is one message of a Flint queue (GET .../messages).
type queueMessage struct {
	MessageID  string            `json:"messageId"`
	Body       string            `json:"body"`
	Attributes map[string]string `json:"attributes"`
}

// invocationRecord is Lambda's destination record, decoded loosely enough
// to check its shape.
type invocationRecord struct {
	Version        string `json:"version"`
	Timestamp      string `json:"timestamp"`
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionArn            string `json:"functionArn"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext *struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError"`
	} `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload"`
}

func queueARN(name string) string { return "arn:aws:sqs:us-east-1:000000000000:" + name }
func functionARNOf(name string) string {
	return "arn:aws:lambda:us-east-1:000000000000:function:" + name
}

// invokeEvent sends an InvocationType=Event invocation and returns the
// request id of the 202 answer.
func invokeEvent(t *testing.T, c *lambda.Client, name string, payload []byte) string {
	t.Helper()
	id, err := tryInvokeEvent(c, name, payload)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// tryInvokeEvent is invokeEvent for use off the test goroutine.
func tryInvokeEvent(c *lambda.Client, name string, payload []byte) (string, error) {
	ctx, cancel := asyncCtx(30 * time.Second)
	defer cancel()
	out, err := c.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(name),
		InvocationType: types.InvocationTypeEvent,
		Payload:        payload,
	})
	if err != nil {
		return "", fmt.Errorf("Event invoke %s: %w", name, err)
	}
	if out.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("Event invoke %s: StatusCode %d, want 202", name, out.StatusCode)
	}
	id, ok := awsmw.GetRequestIDMetadata(out.ResultMetadata)
	if !ok || id == "" {
		return "", fmt.Errorf("Event invoke %s: no request id in the 202 answer", name)
	}
	return id, nil
}

// getJSON GETs url into v; it returns the HTTP status.
func httpGetJSON(url string, v any) (int, error) {
	return httpDoJSON(http.MethodGet, url, v)
}

func httpDoJSON(method, url string, v any) (int, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, err
	}
	cl := http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: %w: %s", method, url, err, b)
	}
	return resp.StatusCode, nil
}

// asyncStatusOf fetches one status record.
func (s *flintServer) asyncStatusOf(id string) (*asyncStatus, error) {
	var st asyncStatus
	if _, err := httpGetJSON(s.url()+"/flint/v1/invocations/"+id, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// waitAsync polls the status of id until done accepts it, and returns it.
func (s *flintServer) waitAsync(t *testing.T, id string, d time.Duration, done func(*asyncStatus) bool) *asyncStatus {
	t.Helper()
	var last *asyncStatus
	polltest.Check(t, d, "the status of "+id, func() error {
		st, err := s.asyncStatusOf(id)
		if err != nil {
			return err
		}
		last = st
		if !done(st) {
			return fmt.Errorf("invocation %s: status %+v", id, *st)
		}
		return nil
	})
	return last
}

func asyncSettled(st *asyncStatus) bool { return st.terminal() && st.Delivered }

// peekQueue returns up to 100 of the oldest messages of a Flint queue.
func (s *flintServer) peekQueue(name string) ([]queueMessage, error) {
	var out struct {
		Messages []queueMessage `json:"messages"`
	}
	_, err := httpGetJSON(s.url()+"/flint/v1/queues/"+name+"/messages?max=100", &out)
	return out.Messages, err
}

// drainQueue takes every message of a Flint queue (bounded by limit).
func (s *flintServer) drainQueue(t *testing.T, name string, limit int) []queueMessage {
	t.Helper()
	var all []queueMessage
	for round := 0; round <= limit/100+1; round++ {
		var out struct {
			Messages []queueMessage `json:"messages"`
		}
		if _, err := httpDoJSON(http.MethodPost, s.url()+"/flint/v1/queues/"+name+"/receive?max=100", &out); err != nil {
			t.Fatal(err)
		}
		all = append(all, out.Messages...)
		if len(out.Messages) == 0 {
			return all
		}
	}
	t.Fatalf("queue %s has more than %d messages", name, limit)
	return nil
}

// waitQueue polls a Flint queue until it holds at least n messages.
func (s *flintServer) waitQueue(t *testing.T, name string, n int, d time.Duration) []queueMessage {
	t.Helper()
	var msgs []queueMessage
	polltest.Check(t, d, "queue "+name, func() error {
		var err error
		if msgs, err = s.peekQueue(name); err != nil {
			return err
		}
		if len(msgs) < n {
			return fmt.Errorf("queue %s has %d messages, want %d", name, len(msgs), n)
		}
		return nil
	})
	return msgs
}

// functionLogs reads a function's whole log via the logs endpoint.
func (s *flintServer) functionLogs(t testing.TB, name string) string {
	t.Helper()
	resp, err := http.Get(s.url() + "/flint/v1/functions/" + name + "/logs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logs of %s: %s: %s", name, resp.Status, b)
	}
	return string(b)
}

// putEventConfig sets a function's asynchronous invocation configuration.
func putEventConfig(t *testing.T, c *lambda.Client, in *lambda.PutFunctionEventInvokeConfigInput) {
	t.Helper()
	if _, err := c.PutFunctionEventInvokeConfig(ctxT(t, 10*time.Second), in); err != nil {
		t.Fatalf("PutFunctionEventInvokeConfig %s: %v", aws.ToString(in.FunctionName), err)
	}
}

func decodeRecord(t *testing.T, body string) invocationRecord {
	t.Helper()
	var r invocationRecord
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("invocation record %q: %v", body, err)
	}
	return r
}

// checkRecordShape checks the fields every invocation record has.
func checkRecordShape(t *testing.T, r invocationRecord, id, fn, condition string, count int, payload []byte) {
	t.Helper()
	if r.Version != "1.0" {
		t.Errorf("record version %q", r.Version)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.Timestamp); err != nil {
		t.Errorf("record timestamp %q: %v", r.Timestamp, err)
	}
	rc := r.RequestContext
	if rc.RequestID != id || rc.FunctionArn != functionARNOf(fn)+":$LATEST" || rc.Condition != condition || rc.ApproximateInvokeCount != count {
		t.Errorf("record requestContext = %+v, want id %s, function %s:$LATEST, condition %s, count %d", rc, id, fn, condition, count)
	}
	if !sameJSON(r.RequestPayload, payload) {
		t.Errorf("record requestPayload = %s, want %s", r.RequestPayload, payload)
	}
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// countLines counts the log lines containing sub.
func countLogLines(log, sub string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// percentile returns the p-th percentile (0..100) of ds.
func durPercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// isNotFound reports whether err is Lambda's ResourceNotFoundException.
func isResourceNotFound(err error) bool {
	var nf *types.ResourceNotFoundException
	return errors.As(err, &nf)
}

func asyncCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
