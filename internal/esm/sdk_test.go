package esm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/esm"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/sqs"
)

const account = "000000000000"

// recorder is the Invoker: it records the events it was given and fails
// the records whose body is "fail" through batchItemFailures.
type recorder struct {
	mu     sync.Mutex
	events []esmEvent
}

type esmEvent struct {
	Records []struct {
		MessageID      string            `json:"messageId"`
		Body           string            `json:"body"`
		Attributes     map[string]string `json:"attributes"`
		EventSource    string            `json:"eventSource"`
		EventSourceARN string            `json:"eventSourceARN"`
	}
}

func (r *recorder) Invoke(_ context.Context, fn *metadata.Function, req invocation.Request) (invocation.Result, error) {
	var ev esmEvent
	if err := json.Unmarshal(req.Payload, &ev); err != nil {
		return invocation.Result{}, err
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	var fails []map[string]string
	for _, rec := range ev.Records {
		if rec.Body == "fail" {
			fails = append(fails, map[string]string{"itemIdentifier": rec.MessageID})
		}
	}
	out, _ := json.Marshal(map[string]any{"batchItemFailures": fails})
	return invocation.Result{RequestID: req.RequestID, Payload: out, ExecutedVersion: fn.Version}, nil
}

func (r *recorder) seen() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[string]int{}
	for _, ev := range r.events {
		for _, rec := range ev.Records {
			n[rec.Body]++
		}
	}
	return n
}

type env struct {
	c      *lambda.Client
	queues *sqs.Service
	rec    *recorder
}

func start(t *testing.T) *env {
	t.Helper()
	bb, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bb.Close)
	ctx := context.Background()
	js := bb.JetStream()
	fns, err := metadata.NewStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fns.Close(context.Background()) })
	for _, f := range []struct {
		name    string
		timeout int
	}{{"fn", 3}, {"slowfn", 60}} {
		if err := fns.Create(ctx, &metadata.Function{Account: account, Region: "us-east-1", Name: f.name, Version: metadata.LatestVersion,
			Runtime: "python3.11", Handler: "h.h", MemorySize: 128, Timeout: f.timeout, State: "Active"}); err != nil {
			t.Fatal(err)
		}
	}
	qs, err := sqs.New(ctx, sqs.Config{JetStream: js, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qs.Close(context.Background()) })
	rec := &recorder{}
	svc, err := esm.New(ctx, esm.Config{JetStream: js, Queues: qs, Functions: fns, Invoker: rec, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	c := lambda.New(lambda.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDFLINT", "secret", ""), RetryMaxAttempts: 1})
	return &env{c: c, queues: qs, rec: rec}
}

func TestMappingAPIAndDelivery(t *testing.T) {
	e := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.queues.CreateQueue(ctx, account, "dlq", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.queues.CreateQueue(ctx, account, "q", map[string]string{"VisibilityTimeout": "3",
		"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":2}`}, nil); err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:sqs:us-east-1:000000000000:q"

	var ipv *types.InvalidParameterValueException
	for name, in := range map[string]*lambda.CreateEventSourceMappingInput{
		"batch 11 without a window": {FunctionName: aws.String("fn"), EventSourceArn: aws.String(arn), BatchSize: aws.Int32(11)},
		"no such queue":             {FunctionName: aws.String("fn"), EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:nope")},
		"not a queue":               {FunctionName: aws.String("fn"), EventSourceArn: aws.String("arn:aws:kinesis:us-east-1:000000000000:stream/s")},
		"visibility below timeout":  {FunctionName: aws.String("slowfn"), EventSourceArn: aws.String(arn)},
		"concurrency 1":             {FunctionName: aws.String("fn"), EventSourceArn: aws.String(arn), ScalingConfig: &types.ScalingConfig{MaximumConcurrency: aws.Int32(1)}},
	} {
		if _, err := e.c.CreateEventSourceMapping(ctx, in); !errors.As(err, &ipv) {
			t.Errorf("%s: %v, want InvalidParameterValueException", name, err)
		}
	}
	var rnf *types.ResourceNotFoundException
	if _, err := e.c.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("nofn"), EventSourceArn: aws.String(arn)}); !errors.As(err, &rnf) {
		t.Errorf("missing function: %v, want ResourceNotFoundException", err)
	}

	m, err := e.c.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("fn"), EventSourceArn: aws.String(arn),
		BatchSize: aws.Int32(5), FunctionResponseTypes: []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures},
		ScalingConfig: &types.ScalingConfig{MaximumConcurrency: aws.Int32(2)}})
	if err != nil {
		t.Fatal(err)
	}
	if *m.State != "Creating" || *m.BatchSize != 5 || *m.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:fn" || *m.ScalingConfig.MaximumConcurrency != 2 {
		t.Fatalf("created: %+v", m)
	}
	var conflict *types.ResourceConflictException
	if _, err := e.c.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("fn"), EventSourceArn: aws.String(arn)}); !errors.As(err, &conflict) {
		t.Errorf("a second mapping of the same queue and function: %v, want ResourceConflictException", err)
	}
	waitState := func(want string) {
		polltest.Check(t, 30*time.Second, "state "+want, func() error {
			got, err := e.c.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: m.UUID})
			if err != nil {
				return err
			}
			if *got.State != want {
				return fmt.Errorf("state %s", *got.State)
			}
			return nil
		})
	}
	waitState("Enabled")
	list, err := e.c.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("fn")})
	if err != nil || len(list.EventSourceMappings) != 1 || *list.EventSourceMappings[0].UUID != *m.UUID {
		t.Fatalf("list: %+v %v", list, err)
	}
	if list, err := e.c.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("slowfn")}); err != nil || len(list.EventSourceMappings) != 0 {
		t.Fatalf("list of another function: %+v %v", list, err)
	}

	// Delivery: 20 messages, one of which the function reports as failed
	// every time: it is seen maxReceiveCount times, then in the DLQ.
	for i := range 20 {
		body := fmt.Sprint("ok-", i)
		if i == 7 {
			body = "fail"
		}
		if _, err := e.queues.Send(ctx, account, "q", sqs.SendInput{Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	wait := time.Second
	var dead []sqs.Message
	polltest.Check(t, time.Minute, "the failed message in the DLQ", func() error {
		msgs, err := e.queues.Receive(ctx, account, "dlq", sqs.ReceiveInput{Max: 10, Wait: &wait})
		dead = append(dead, msgs...)
		if err != nil || len(dead) == 0 {
			return fmt.Errorf("DLQ: %d %v", len(dead), err)
		}
		return nil
	})
	seen := e.rec.seen()
	for i := range 20 {
		body, want := fmt.Sprint("ok-", i), 1
		if i == 7 {
			body, want = "fail", 2
		}
		if seen[body] != want {
			t.Errorf("%s seen %d times, want %d", body, seen[body], want)
		}
	}
	if len(dead) != 1 || dead[0].Body != "fail" {
		t.Errorf("DLQ: %+v", dead)
	}
	e.rec.mu.Lock()
	for _, ev := range e.rec.events {
		if len(ev.Records) > 5 {
			t.Errorf("a batch of %d records, BatchSize is 5", len(ev.Records))
		}
		if r := ev.Records[0]; r.EventSource != "aws:sqs" || r.EventSourceARN != arn || r.Attributes["ApproximateReceiveCount"] == "" {
			t.Errorf("record: %+v", r)
		}
	}
	e.rec.mu.Unlock()

	// Disable: Disabling, then Disabled; nothing is delivered meanwhile.
	upd, err := e.c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: m.UUID, Enabled: aws.Bool(false)})
	if err != nil || *upd.State != "Disabling" {
		t.Fatalf("disable: %+v %v", upd, err)
	}
	waitState("Disabled")
	if _, err := e.queues.Send(ctx, account, "q", sqs.SendInput{Body: "while-disabled"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := e.rec.seen()["while-disabled"]; n != 0 {
		t.Fatalf("a disabled mapping delivered %d messages", n)
	}
	upd, err = e.c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: m.UUID, Enabled: aws.Bool(true), BatchSize: aws.Int32(10)})
	if err != nil || *upd.State != "Enabling" || *upd.BatchSize != 10 {
		t.Fatalf("enable: %+v %v", upd, err)
	}
	polltest.Check(t, 30*time.Second, "the message sent while disabled", func() error {
		if n := e.rec.seen()["while-disabled"]; n != 1 {
			got, _ := e.c.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: m.UUID})
			q, _ := e.queues.GetQueue(ctx, account, "q")
			cnt, _ := e.queues.Count(ctx, q)
			return fmt.Errorf("seen %d times; mapping %s; queue %+v", n, aws.ToString(got.State), cnt)
		}
		return nil
	})

	del, err := e.c.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: m.UUID})
	if err != nil || *del.State != "Deleting" {
		t.Fatalf("delete: %+v %v", del, err)
	}
	polltest.Check(t, 30*time.Second, "the mapping to be gone", func() error {
		_, err := e.c.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: m.UUID})
		if !errors.As(err, &rnf) {
			return fmt.Errorf("get: %v", err)
		}
		return nil
	})
}
