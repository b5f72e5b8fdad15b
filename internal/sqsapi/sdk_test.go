package sqsapi_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/flintdev/flint/internal/asyncq/queues"
	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/sqs"
	"github.com/flintdev/flint/internal/sqsapi"
)

const account = "000000000000"

type env struct {
	svc    *sqs.Service
	bb     *backbone.Backbone
	client *awssqs.Client
	url    string
}

// start runs the engine on an embedded backbone behind an httptest server
// and returns an aws-sdk-go-v2 SQS client for it.
func start(t *testing.T) *env {
	t.Helper()
	bb, err := backbone.Start(backbone.Config{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bb.Close)
	ctx := context.Background()
	svc, err := sqs.New(ctx, sqs.Config{JetStream: bb.JetStream(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	h, err := sqsapi.New(sqsapi.Config{Queues: svc, DefaultAccount: account})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := awssqs.New(awssqs.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(srv.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDFLINT", "secret", ""),
		RetryMaxAttempts: 1,
	})
	return &env{svc: svc, bb: bb, client: c, url: srv.URL}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSDKEveryOperation(t *testing.T) {
	e := start(t)
	c := e.client
	ctx := ctxT(t)

	dlq, err := c.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String("dlq")})
	if err != nil {
		t.Fatal(err)
	}
	if want := e.url + "/" + account + "/dlq"; *dlq.QueueUrl != want {
		t.Fatalf("QueueUrl %s, want %s", *dlq.QueueUrl, want)
	}
	cq, err := c.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String("work"), Attributes: map[string]string{
		"VisibilityTimeout": "1",
		"RedrivePolicy":     `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"2"}`,
	}})
	if err != nil {
		t.Fatal(err)
	}
	q := cq.QueueUrl
	// Same name, same attributes: the same queue; different: an error.
	if _, err := c.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String("work"), Attributes: map[string]string{"VisibilityTimeout": "1"}}); err != nil {
		t.Fatalf("idempotent CreateQueue: %v", err)
	}
	_, err = c.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String("work"), Attributes: map[string]string{"VisibilityTimeout": "7"}})
	var exists *types.QueueNameExists
	if !errors.As(err, &exists) {
		t.Fatalf("CreateQueue with other attributes: %v, want QueueNameExists", err)
	}

	got, err := c.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String("work")})
	if err != nil || *got.QueueUrl != *q {
		t.Fatalf("GetQueueUrl: %v %v", got, err)
	}
	_, err = c.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	var missing *types.QueueDoesNotExist
	if !errors.As(err, &missing) {
		t.Fatalf("GetQueueUrl of a missing queue: %v, want QueueDoesNotExist", err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() != "AWS.SimpleQueueService.NonExistentQueue" && apiErr.ErrorCode() != "QueueDoesNotExist" {
		t.Errorf("error code %s", apiErr.ErrorCode())
	}
	list, err := c.ListQueues(ctx, &awssqs.ListQueuesInput{QueueNamePrefix: aws.String("wo")})
	if err != nil || len(list.QueueUrls) != 1 || list.QueueUrls[0] != *q {
		t.Fatalf("ListQueues: %+v %v", list, err)
	}
	page, err := c.ListQueues(ctx, &awssqs.ListQueuesInput{MaxResults: aws.Int32(1)})
	if err != nil || len(page.QueueUrls) != 1 || page.NextToken == nil {
		t.Fatalf("ListQueues page 1: %+v %v", page, err)
	}
	page2, err := c.ListQueues(ctx, &awssqs.ListQueuesInput{MaxResults: aws.Int32(1), NextToken: page.NextToken})
	if err != nil || len(page2.QueueUrls) != 1 || page2.QueueUrls[0] == page.QueueUrls[0] {
		t.Fatalf("ListQueues page 2: %+v %v", page2, err)
	}

	if _, err := c.SetQueueAttributes(ctx, &awssqs.SetQueueAttributesInput{QueueUrl: q, Attributes: map[string]string{
		"MessageRetentionPeriod": "3600", "DelaySeconds": "0",
	}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.SetQueueAttributes(ctx, &awssqs.SetQueueAttributesInput{QueueUrl: q, Attributes: map[string]string{"VisibilityTimeout": "99999"}})
	var badValue *types.InvalidAttributeValue
	if !errors.As(err, &badValue) {
		t.Fatalf("SetQueueAttributes out of range: %v, want InvalidAttributeValue", err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: q, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	if a := attrs.Attributes; a["MessageRetentionPeriod"] != "3600" || a["VisibilityTimeout"] != "1" || a["QueueArn"] != "arn:aws:sqs:us-east-1:000000000000:work" {
		t.Fatalf("attributes: %v", a)
	}

	// SendMessage with attributes: the SDK checks every MD5 it gets back.
	sent, err := c.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String("héllo"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"s": {DataType: aws.String("String"), StringValue: aws.String("x")},
			"n": {DataType: aws.String("Number"), StringValue: aws.String("42")},
			"b": {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	var entries []types.SendMessageBatchRequestEntry
	for i := range 10 {
		entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String("e" + strconv.Itoa(i)), MessageBody: aws.String("batch-" + strconv.Itoa(i))})
	}
	batch, err := c.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: q, Entries: entries})
	if err != nil || len(batch.Successful) != 10 || len(batch.Failed) != 0 {
		t.Fatalf("SendMessageBatch: %+v %v", batch, err)
	}
	entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String("e10"), MessageBody: aws.String("x")})
	_, err = c.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: q, Entries: entries})
	var tooMany *types.TooManyEntriesInBatchRequest
	if !errors.As(err, &tooMany) {
		t.Fatalf("11 entries: %v, want TooManyEntriesInBatchRequest", err)
	}

	// Receive everything: 11 messages, each once.
	seen := map[string]types.Message{}
	for len(seen) < 11 {
		out, err := c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: q, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			VisibilityTimeout: 30, MessageAttributeNames: []string{"All"}, MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			t.Fatalf("received %d of 11 messages", len(seen))
		}
		for _, m := range out.Messages {
			if _, dup := seen[*m.MessageId]; dup {
				t.Fatalf("message %s received twice while invisible", *m.MessageId)
			}
			seen[*m.MessageId] = m
		}
	}
	m := seen[*sent.MessageId]
	if *m.Body != "héllo" || m.Attributes["ApproximateReceiveCount"] != "1" || m.Attributes["SentTimestamp"] == "" ||
		*m.MessageAttributes["n"].StringValue != "42" || string(m.MessageAttributes["b"].BinaryValue) != "\x00\x01\x02" {
		t.Fatalf("message: %+v", m)
	}

	// Delete one, delete a batch, hand one back at once, and one with an
	// invalid receipt handle.
	var handles []string
	for id, m := range seen {
		if id != *sent.MessageId {
			handles = append(handles, *m.ReceiptHandle)
		}
	}
	sort.Strings(handles)
	if _, err := c.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: q, ReceiptHandle: aws.String(handles[0])}); err != nil {
		t.Fatal(err)
	}
	var del []types.DeleteMessageBatchRequestEntry
	for i, h := range handles[1:] {
		del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(h)})
	}
	del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String("bad"), ReceiptHandle: aws.String("not-a-handle")})
	dout, err := c.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: q, Entries: del})
	if err != nil || len(dout.Successful) != 9 || len(dout.Failed) != 1 || *dout.Failed[0].Code != "ReceiptHandleIsInvalid" {
		t.Fatalf("DeleteMessageBatch: %+v %v", dout, err)
	}
	_, err = c.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: q, ReceiptHandle: aws.String("garbage")})
	var badHandle *types.ReceiptHandleIsInvalid
	if !errors.As(err, &badHandle) {
		t.Fatalf("DeleteMessage garbage: %v, want ReceiptHandleIsInvalid", err)
	}
	if _, err := c.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{QueueUrl: q, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	again, err := c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 5, MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount}})
	if err != nil || len(again.Messages) != 1 || *again.Messages[0].MessageId != *sent.MessageId || again.Messages[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("receive after ChangeMessageVisibility 0: %+v %v", again, err)
	}
	cv, err := c.ChangeMessageVisibilityBatch(ctx, &awssqs.ChangeMessageVisibilityBatchInput{QueueUrl: q, Entries: []types.ChangeMessageVisibilityBatchRequestEntry{
		{Id: aws.String("a"), ReceiptHandle: again.Messages[0].ReceiptHandle, VisibilityTimeout: 0},
	}})
	if err != nil || len(cv.Successful) != 1 {
		t.Fatalf("ChangeMessageVisibilityBatch: %+v %v", cv, err)
	}
	// Third receive exceeds maxReceiveCount 2: the message moves to the DLQ.
	third, err := c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 2})
	if err != nil || len(third.Messages) != 0 {
		t.Fatalf("third receive: %+v %v", third, err)
	}
	dead, err := c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, WaitTimeSeconds: 5, MessageAttributeNames: []string{"All"}})
	if err != nil || len(dead.Messages) != 1 || *dead.Messages[0].MessageId != *sent.MessageId || *dead.Messages[0].Body != "héllo" || len(dead.Messages[0].MessageAttributes) != 3 {
		t.Fatalf("DLQ: %+v %v", dead, err)
	}

	// Delay: invisible until due.
	if _, err := c.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String("later"), DelaySeconds: 2}); err != nil {
		t.Fatal(err)
	}
	sentAt := time.Now()
	early, err := c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: q})
	if err != nil {
		t.Fatal(err)
	}
	if len(early.Messages) != 0 && time.Since(sentAt) < 2*time.Second {
		t.Fatalf("a delayed message was received before it was due")
	}
	late, err := c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 10})
	if err != nil || len(late.Messages) != 1 || *late.Messages[0].Body != "later" {
		t.Fatalf("delayed message: %+v %v", late, err)
	}

	if _, err := c.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String("purge me")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PurgeQueue(ctx, &awssqs.PurgeQueueInput{QueueUrl: q}); err != nil {
		t.Fatal(err)
	}
	empty, err := c.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 1})
	if err != nil || len(empty.Messages) != 0 {
		t.Fatalf("after purge: %+v %v", empty, err)
	}
	if _, err := c.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: q}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: q}); !errors.As(err, &missing) {
		t.Fatalf("deleted queue: %v, want QueueDoesNotExist", err)
	}
}

// A queue the async path wrote to (a destination or DLQ) is an SQS queue.
func TestAsyncQueueIsSQSQueue(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	qs, err := queues.Open(ctx, queues.Config{JetStream: e.bb.JetStream()})
	if err != nil {
		t.Fatal(err)
	}
	if err := qs.Send(ctx, account, "fn-dlq", []byte(`{"k":1}`), map[string]string{"ErrorCode": "200"}, "req-1"); err != nil {
		t.Fatal(err)
	}
	list, err := e.client.ListQueues(ctx, &awssqs.ListQueuesInput{})
	if err != nil || len(list.QueueUrls) != 1 {
		t.Fatalf("ListQueues: %+v %v", list, err)
	}
	u, err := e.client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String("fn-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: u.QueueUrl, MessageAttributeNames: []string{"All"}})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receive: %+v %v", out, err)
	}
	m := out.Messages[0]
	if *m.MessageId != "req-1" || *m.Body != `{"k":1}` || *m.MessageAttributes["ErrorCode"].StringValue != "200" {
		t.Fatalf("message: %+v", m)
	}
	if _, err := e.client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: u.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	if left, err := qs.Peek(ctx, account, "fn-dlq", 10); err != nil || len(left) != 0 {
		t.Fatalf("after DeleteMessage the queue still holds %v (%v)", left, err)
	}
}
