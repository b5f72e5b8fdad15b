package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/flintdev/flint/internal/polltest"
)

// BenchmarkSQSEventSource measures a queue → function event source
// mapping on a real server against its peer, the same function invoked
// directly with the same batches:
//
//   - drain-msg/s: 1,000 messages queued while the mapping is disabled,
//     then enabled; messages per second from enabling to the function
//     seeing the last one (batch size 10, concurrency 10). Peer:
//     direct-msg/s, the same 100 ten-record events sent with synchronous
//     Invoke by 10 concurrent clients.
//   - e2e-p50-ms: 200 messages sent one at a time every 20 ms with the
//     mapping enabled; median of (function's clock − SentTimestamp). Peer:
//     invoke-p50-ms, the median round trip of a one-record synchronous
//     Invoke.
//
// Run: go test -run '^$' -bench SQSEventSource -benchtime 1x ./e2e
func BenchmarkSQSEventSource(b *testing.B) {
	s := startServer(b, b.TempDir())
	c := s.lambda()
	ctx := context.Background()
	python := pythonRuntime(b, c)
	if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("sqsrec"), Runtime: types.Runtime(python), Handler: aws.String("handler.handler"),
		Role: aws.String("arn:aws:iam::000000000000:role/x"), Code: &types.FunctionCode{ZipFile: zipTestdata(b, "sqsfn")},
	}); err != nil {
		b.Fatal(err)
	}
	q := awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.url()),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDFLINT", "secret", ""), RetryMaxAttempts: 1})
	cq, err := q.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String("bench")})
	if err != nil {
		b.Fatal(err)
	}
	m, err := c.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("sqsrec"),
		EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:bench"), BatchSize: aws.Int32(10), Enabled: aws.Bool(false)})
	if err != nil {
		b.Fatal(err)
	}
	waitState := func(want string) {
		polltest.Check(b, 30*time.Second, "mapping "+want, func() error {
			out, err := c.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: m.UUID})
			if err != nil {
				return err
			}
			if *out.State != want {
				return fmt.Errorf("state %s", *out.State)
			}
			return nil
		})
	}
	seenWith := func(prefix string, n int) []sighting {
		var got []sighting
		polltest.Check(b, 5*time.Minute, fmt.Sprintf("%d %s messages seen", n, prefix), func() error {
			got = got[:0]
			for _, x := range sightings(s.functionLogs(b, "sqsrec")) {
				if strings.HasPrefix(x.body, prefix) {
					got = append(got, x)
				}
			}
			if len(got) < n {
				return fmt.Errorf("%d seen", len(got))
			}
			return nil
		})
		return got
	}
	waitState("Disabled")
	// Warm the function once so both sides start from a warm sandbox.
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sqsrec"), Payload: []byte(`{"Records":[]}`)}); err != nil {
		b.Fatal(err)
	}

	// fill queues n messages with bodies prefix0000...
	fill := func(prefix string, n int) {
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; k < n/10; k += 4 {
					var entries []sqstypes.SendMessageBatchRequestEntry
					for i := k * 10; i < k*10+10; i++ {
						entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(fmt.Sprintf("%s%04d", prefix, i))})
					}
					if _, err := q.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: cq.QueueUrl, Entries: entries}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	// Warm up: one drain, so that the mapping's sandboxes are warm for
	// both sides, as the peer's are.
	fill("warm-", 1000)
	if _, err := c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: m.UUID, Enabled: aws.Bool(true)}); err != nil {
		b.Fatal(err)
	}
	seenWith("warm-", 1000)
	if _, err := c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: m.UUID, Enabled: aws.Bool(false)}); err != nil {
		b.Fatal(err)
	}
	waitState("Disabled")

	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		// Drain: fill while disabled, then enable.
		const n = 1000
		prefix := fmt.Sprintf("d%d-", it)
		fill(prefix, n)
		var wg sync.WaitGroup
		coldBefore := strings.Count(s.functionLogs(b, "sqsrec"), "Init Duration")
		startsBefore := strings.Count(s.functionLogs(b, "sqsrec"), "START RequestId")
		enabled := time.Now()
		if _, err := c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: m.UUID, Enabled: aws.Bool(true)}); err != nil {
			b.Fatal(err)
		}
		// Wait on the queue's counts (cheap) rather than on the logs, whose
		// reading would compete with the drain for the CPU.
		polltest.Check(b, 5*time.Minute, "the queue to drain", func() error {
			a, err := q.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: cq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
			if err != nil {
				return err
			}
			if v, f := a.Attributes["ApproximateNumberOfMessages"], a.Attributes["ApproximateNumberOfMessagesNotVisible"]; v != "0" || f != "0" {
				return fmt.Errorf("%s visible, %s in flight", v, f)
			}
			return nil
		})
		got := seenWith(prefix, n)
		var last, first int64 = 0, 1 << 62
		for _, x := range got {
			last, first = max(last, x.at), min(first, x.at)
		}
		b.ReportMetric(float64(time.UnixMilli(first).Sub(enabled).Milliseconds()), "drain-first-ms")
		drain := time.UnixMilli(last).Sub(enabled)
		b.ReportMetric(float64(n)/drain.Seconds(), "drain-msg/s")
		logs := s.functionLogs(b, "sqsrec")
		b.ReportMetric(float64(strings.Count(logs, "Init Duration")-coldBefore), "drain-cold-starts")
		b.ReportMetric(float64(n)/float64(strings.Count(logs, "START RequestId")-startsBefore), "drain-batch-size")

		// Peer: the same 100 events of ten records, invoked directly.
		events := make(chan []byte, n/10)
		for k := 0; k < n/10; k++ {
			var recs []map[string]any
			for i := k * 10; i < k*10+10; i++ {
				recs = append(recs, map[string]any{"messageId": fmt.Sprint(i), "body": fmt.Sprintf("p%d-%04d", it, i),
					"attributes": map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": fmt.Sprint(time.Now().UnixMilli())}})
			}
			ev, _ := json.Marshal(map[string]any{"Records": recs})
			events <- ev
		}
		close(events)
		start := time.Now()
		for w := 0; w < 10; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ev := range events {
					if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sqsrec"), Payload: ev}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "direct-msg/s")

		// Latency: a trickle with the mapping enabled.
		const trickle = 200
		prefix = fmt.Sprintf("l%d-", it)
		for i := 0; i < trickle; i++ {
			if _, err := q.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: cq.QueueUrl, MessageBody: aws.String(fmt.Sprintf("%s%04d", prefix, i))}); err != nil {
				b.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		var lats []time.Duration
		for _, x := range seenWith(prefix, trickle) {
			lats = append(lats, x.latency)
		}
		b.ReportMetric(float64(median(lats))/float64(time.Millisecond), "e2e-p50-ms")
		var rts []time.Duration
		for i := 0; i < trickle/4; i++ {
			ev := fmt.Sprintf(`{"Records":[{"messageId":"x","body":"r%d-%d","attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"%d"}}]}`, it, i, time.Now().UnixMilli())
			t0 := time.Now()
			if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sqsrec"), Payload: []byte(ev)}); err != nil {
				b.Fatal(err)
			}
			rts = append(rts, time.Since(t0))
		}
		b.ReportMetric(float64(median(rts))/float64(time.Millisecond), "invoke-p50-ms")

		if _, err := c.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: m.UUID, Enabled: aws.Bool(false)}); err != nil {
			b.Fatal(err)
		}
		waitState("Disabled")
	}
}

// pythonRuntime returns the python3.x runtime the server offers (its
// error for an unknown runtime lists them).
func pythonRuntime(b *testing.B, c *lambda.Client) string {
	_, err := c.CreateFunction(context.Background(), &lambda.CreateFunctionInput{
		FunctionName: aws.String("probe-runtimes"), Runtime: types.Runtime("cobol85"), Handler: aws.String("x"),
		Role: aws.String("arn:aws:iam::000000000000:role/x"), Code: &types.FunctionCode{ZipFile: goFnZip},
	})
	if err != nil {
		for _, f := range strings.FieldsFunc(err.Error(), func(r rune) bool { return strings.ContainsRune(" ,[]:;()'\"", r) }) {
			if strings.HasPrefix(f, "python3.") {
				return strings.TrimSuffix(f, ".")
			}
		}
	}
	b.Fatalf("no python3.x runtime: %v", err)
	return ""
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}
