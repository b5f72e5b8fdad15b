package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/flintdev/flint/internal/polltest"
)

// sawRE matches the sqsfn function's line per record: id, body, receive
// count, latency from SentTimestamp (ms), the function's clock (ms).
var sawRE = regexp.MustCompile(`(?m)^saw (\S+) (\S+) (\d+) (-?\d+) (\d+)$`)

type sighting struct {
	id, body string
	count    int
	latency  time.Duration
	at       int64
}

func sightings(logs string) []sighting {
	var out []sighting
	for _, m := range sawRE.FindAllStringSubmatch(logs, -1) {
		n, _ := strconv.Atoi(m[3])
		lat, _ := strconv.Atoi(m[4])
		at, _ := strconv.ParseInt(m[5], 10, 64)
		out = append(out, sighting{id: m[1], body: m[2], count: n, latency: time.Duration(lat) * time.Millisecond, at: at})
	}
	return out
}

// TestSQSEventSourceMapping is issue 14's SQS scenario with real clients
// and --auth required: the AWS CLI (query protocol, signed for sqs)
// creates queues and sends 1,000 messages, an event source mapping with
// batch size 10 drains them into a function exactly once each; a function
// reporting batchItemFailures sees only those messages again, and after
// maxReceiveCount they are in the DLQ, read with `aws sqs receive-message`;
// an async invocation's DLQ is an SQS queue too.
func TestSQSEventSourceMapping(t *testing.T) {
	s := startServer(t, t.TempDir(), "--auth", "required", "--async-retry-delays", "1s")
	root := s.rootCreds(t)
	env := root.env()
	aws_ := func(args ...string) string {
		t.Helper()
		out, stderr, err := s.awsAs(t, env, args...)
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out
	}
	logs := func() string {
		t.Helper()
		out, err := s.flintAs(t, env, "logs", "sqsrec")
		if err != nil {
			t.Fatalf("flint logs: %v\n%s", err, out)
		}
		return out
	}

	// Unsigned, or signed for another service: refused.
	resp, err := http.Post(s.url()+"/", "application/x-www-form-urlencoded", strings.NewReader("Action=ListQueues"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned ListQueues: %s, want 403", resp.Status)
	}

	c := s.lambdaAs(root)
	python := offeredRuntime(t, c, "python3.")
	if _, err := c.CreateFunction(ctxT(t, 60*time.Second), &lambda.CreateFunctionInput{
		FunctionName:     aws.String("sqsrec"),
		Runtime:          types.Runtime(python),
		Handler:          aws.String("handler.handler"),
		Role:             aws.String("arn:aws:iam::000000000000:role/x"),
		Code:             &types.FunctionCode{ZipFile: zipTestdata(t, "sqsfn")},
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(queueARN("async-dlq"))},
	}); err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}

	aws_("sqs", "create-queue", "--queue-name", "work-dlq")
	var created struct{ QueueUrl string }
	json.Unmarshal([]byte(aws_("sqs", "create-queue", "--queue-name", "work", "--attributes",
		`{"VisibilityTimeout":"4","RedrivePolicy":"{\"deadLetterTargetArn\":\"arn:aws:sqs:us-east-1:000000000000:work-dlq\",\"maxReceiveCount\":\"2\"}"}`)), &created)
	if want := s.url() + "/000000000000/work"; created.QueueUrl != want {
		t.Fatalf("QueueUrl %q, want %q", created.QueueUrl, want)
	}
	work := created.QueueUrl

	// 1,000 messages, ten per send-message-batch, four CLIs at a time.
	const n = 1000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for b := 0; b < n/10; b++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var entries []map[string]string
			for i := b * 10; i < b*10+10; i++ {
				entries = append(entries, map[string]string{"Id": fmt.Sprint(i), "MessageBody": fmt.Sprintf("m-%04d", i)})
			}
			js, _ := json.Marshal(entries)
			out, stderr, err := s.awsAs(t, env, "sqs", "send-message-batch", "--queue-url", work, "--entries", string(js))
			if err != nil || !strings.Contains(out, `"Successful"`) || strings.Contains(out, `"Failed"`) {
				t.Errorf("send-message-batch %d: %v\n%s%s", b, err, out, stderr)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var attrs struct{ Attributes map[string]string }
	json.Unmarshal([]byte(aws_("sqs", "get-queue-attributes", "--queue-url", work, "--attribute-names", "All")), &attrs)
	if attrs.Attributes["ApproximateNumberOfMessages"] != strconv.Itoa(n) {
		t.Fatalf("after sending: %v", attrs.Attributes)
	}

	var esm struct{ UUID, State, FunctionArn string }
	json.Unmarshal([]byte(aws_("lambda", "create-event-source-mapping", "--function-name", "sqsrec",
		"--event-source-arn", "arn:aws:sqs:us-east-1:000000000000:work", "--batch-size", "10",
		"--function-response-types", "ReportBatchItemFailures")), &esm)
	if esm.State != "Creating" || esm.FunctionArn != "arn:aws:lambda:us-east-1:000000000000:function:sqsrec" {
		t.Fatalf("create-event-source-mapping: %+v", esm)
	}
	polltest.Check(t, 30*time.Second, "the mapping to be Enabled", func() error {
		json.Unmarshal([]byte(aws_("lambda", "get-event-source-mapping", "--uuid", esm.UUID)), &esm)
		if esm.State != "Enabled" {
			return fmt.Errorf("state %s", esm.State)
		}
		return nil
	})

	// Every message reaches the function; the queue empties.
	var seen []sighting
	polltest.Check(t, 5*time.Minute, "the function to see all 1,000 messages", func() error {
		seen = sightings(logs())
		if len(seen) < n {
			return fmt.Errorf("%d seen", len(seen))
		}
		return nil
	})
	polltest.Check(t, 60*time.Second, "the queue to be empty", func() error {
		json.Unmarshal([]byte(aws_("sqs", "get-queue-attributes", "--queue-url", work, "--attribute-names", "All")), &attrs)
		if attrs.Attributes["ApproximateNumberOfMessages"] != "0" || attrs.Attributes["ApproximateNumberOfMessagesNotVisible"] != "0" {
			return fmt.Errorf("attributes %v", attrs.Attributes)
		}
		return nil
	})
	// Exactly once each, after a visibility timeout's worth of waiting for
	// any redelivery.
	time.Sleep(5 * time.Second)
	seen = sightings(logs())
	times := map[string]int{}
	var lats []time.Duration
	first, last := int64(1<<62), int64(0)
	for _, x := range seen {
		times[x.body]++
		lats = append(lats, x.latency)
		first, last = min(first, x.at), max(last, x.at)
	}
	for i := 0; i < n; i++ {
		if b := fmt.Sprintf("m-%04d", i); times[b] != 1 {
			t.Errorf("%s seen %d times, want once", b, times[b])
		}
	}
	if len(seen) != n {
		t.Errorf("%d sightings for %d messages", len(seen), n)
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	t.Logf("drained %d messages: function saw them over %v (%.0f msg/s once started); queue wait p50 %v (messages were queued before the mapping existed)",
		n, time.Duration(last-first)*time.Millisecond, float64(n)/max(time.Duration(last-first)*time.Millisecond, time.Millisecond).Seconds(), lats[len(lats)/2])

	// The event's shape, as Lambda's.
	shape := regexp.MustCompile(`(?m)^shape (.*)$`).FindStringSubmatch(logs())
	if shape == nil {
		t.Fatal("no shape line")
	}
	var sh map[string]any
	if err := json.Unmarshal([]byte(shape[1]), &sh); err != nil {
		t.Fatal(err)
	}
	if sh["eventSource"] != "aws:sqs" || sh["eventSourceARN"] != "arn:aws:sqs:us-east-1:000000000000:work" || sh["awsRegion"] != "us-east-1" ||
		fmt.Sprint(sh["attributes"]) != "[ApproximateFirstReceiveTimestamp ApproximateReceiveCount SenderId SentTimestamp]" {
		t.Errorf("record shape: %s", shape[1])
	}

	// batchItemFailures: only the failed messages come back, twice in all,
	// then they are in the DLQ.
	var entries []map[string]string
	for i := 0; i < 10; i++ {
		body := fmt.Sprintf("ok-%d", i)
		if i%3 == 0 {
			body = fmt.Sprintf("fail-%d", i)
		}
		entries = append(entries, map[string]string{"Id": fmt.Sprint(i), "MessageBody": body})
	}
	js, _ := json.Marshal(entries)
	aws_("sqs", "send-message-batch", "--queue-url", work, "--entries", string(js))
	dlqURL := s.url() + "/000000000000/work-dlq"
	dead := map[string]bool{}
	polltest.Check(t, 2*time.Minute, "the failed messages to reach the DLQ", func() error {
		var out struct {
			Messages []struct{ Body, ReceiptHandle string }
		}
		json.Unmarshal([]byte(aws_("sqs", "receive-message", "--queue-url", dlqURL, "--max-number-of-messages", "10", "--wait-time-seconds", "1")), &out)
		for _, m := range out.Messages {
			dead[m.Body] = true
			aws_("sqs", "delete-message", "--queue-url", dlqURL, "--receipt-handle", m.ReceiptHandle)
		}
		if len(dead) < 4 {
			return fmt.Errorf("DLQ holds %v", dead)
		}
		return nil
	})
	if len(dead) != 4 || !dead["fail-0"] || !dead["fail-3"] || !dead["fail-6"] || !dead["fail-9"] {
		t.Errorf("DLQ got %v, want fail-0, fail-3, fail-6, fail-9", dead)
	}
	times = map[string]int{}
	for _, x := range sightings(logs()) {
		times[x.body]++
	}
	for _, e := range entries {
		want := 1
		if strings.HasPrefix(e["MessageBody"], "fail") {
			want = 2 // maxReceiveCount
		}
		if got := times[e["MessageBody"]]; got != want {
			t.Errorf("%s seen %d times, want %d", e["MessageBody"], got, want)
		}
	}

	// Another account sees none of this: no queues, the URL is a queue
	// that does not exist, no mapping on it, and its own queue of the same
	// name is another queue.
	out, err := s.flintAs(t, env, "keys", "create", "--account", "111111111111")
	var other creds
	if err != nil || json.Unmarshal([]byte(out), &other) != nil || other.SecretAccessKey == "" {
		t.Fatalf("flint keys create: %v\n%s", err, out)
	}
	if out, stderr, err := s.awsAs(t, other.env(), "sqs", "list-queues"); err != nil || strings.Contains(out, "work") {
		t.Errorf("another account's list-queues: %v %s%s", err, out, stderr)
	}
	if _, stderr, err := s.awsAs(t, other.env(), "sqs", "receive-message", "--queue-url", work); err == nil || !strings.Contains(stderr, "NonExistentQueue") {
		t.Errorf("another account's receive-message on %s: %v %s", work, err, stderr)
	}
	// (its own function, on the first account's queue)
	if _, err := s.lambdaAs(other).CreateFunction(ctxT(t, 60*time.Second), &lambda.CreateFunctionInput{
		FunctionName: aws.String("sqsrec"), Runtime: types.Runtime(python), Handler: aws.String("handler.handler"),
		Role: aws.String("arn:aws:iam::111111111111:role/x"), Code: &types.FunctionCode{ZipFile: zipTestdata(t, "sqsfn")},
	}); err != nil {
		t.Fatal(err)
	}
	if out, stderr, err := s.awsAs(t, other.env(), "lambda", "create-event-source-mapping", "--function-name", "sqsrec",
		"--event-source-arn", "arn:aws:sqs:us-east-1:000000000000:work"); err == nil || !strings.Contains(stderr, "InvalidParameterValueException") {
		t.Errorf("another account's mapping on work: %v %s%s", err, out, stderr)
	}
	if out, stderr, err := s.awsAs(t, other.env(), "sqs", "create-queue", "--queue-name", "work"); err != nil || !strings.Contains(out, "/111111111111/work") {
		t.Errorf("another account's own work queue: %v %s%s", err, out, stderr)
	}

	// Disable, then delete, as Lambda's state machine.
	var upd struct{ State string }
	json.Unmarshal([]byte(aws_("lambda", "update-event-source-mapping", "--uuid", esm.UUID, "--no-enabled")), &upd)
	if upd.State != "Disabling" {
		t.Errorf("update --no-enabled: state %s, want Disabling", upd.State)
	}
	polltest.Check(t, 30*time.Second, "the mapping to be Disabled", func() error {
		json.Unmarshal([]byte(aws_("lambda", "get-event-source-mapping", "--uuid", esm.UUID)), &esm)
		if esm.State != "Disabled" {
			return fmt.Errorf("state %s", esm.State)
		}
		return nil
	})
	json.Unmarshal([]byte(aws_("lambda", "delete-event-source-mapping", "--uuid", esm.UUID)), &upd)
	if upd.State != "Deleting" {
		t.Errorf("delete: state %s, want Deleting", upd.State)
	}
	polltest.Check(t, 30*time.Second, "the mapping to be gone", func() error {
		_, stderr, err := s.awsAs(t, env, "lambda", "get-event-source-mapping", "--uuid", esm.UUID)
		if err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
			return fmt.Errorf("get: %v %s", err, stderr)
		}
		return nil
	})

	// An async invocation that fails lands in the function's DLQ, an SQS
	// queue like any other.
	if _, err := c.PutFunctionEventInvokeConfig(ctxT(t, 30*time.Second), &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName: aws.String("sqsrec"), MaximumRetryAttempts: aws.Int32(0),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invoke(ctxT(t, 30*time.Second), &lambda.InvokeInput{FunctionName: aws.String("sqsrec"),
		InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"not":"sqs"}`)}); err != nil {
		t.Fatal(err)
	}
	polltest.Check(t, 2*time.Minute, "the failed async event in async-dlq", func() error {
		out, stderr, err := s.awsAs(t, env, "sqs", "receive-message", "--queue-url", s.url()+"/000000000000/async-dlq",
			"--message-attribute-names", "All", "--wait-time-seconds", "1")
		if err != nil {
			return fmt.Errorf("%v %s", err, stderr)
		}
		if !strings.Contains(out, `{\"not\":\"sqs\"}`) || !strings.Contains(out, "ErrorMessage") {
			return fmt.Errorf("receive: %s", out)
		}
		return nil
	})
}
