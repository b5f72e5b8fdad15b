package sqsapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/backbone"
	"github.com/flintdev/flint/internal/sqs"
	"github.com/flintdev/flint/internal/sqsapi"
)

// FuzzHandler sends arbitrary operations and bodies, in both protocols,
// to the handler on a real engine: bad input is always the caller's error
// (4xx), never a server error.
func FuzzHandler(f *testing.F) {
	for _, seed := range []struct{ op, body string }{
		{"CreateQueue", `{"QueueName":"q","Attributes":{"RedrivePolicy":"{\"maxReceiveCount\":\"x\"}"}}`},
		{"CreateQueue", `{"QueueName":"q","Attributes":{"VisibilityTimeout":"-1","FifoQueue":"true"}}`},
		{"SendMessage", `{"QueueUrl":"http://h/000000000000/q","MessageBody":"\u0000","DelaySeconds":901}`},
		{"SendMessage", `{"QueueUrl":"http://h/000000000000/q","MessageBody":"x","MessageAttributes":{"a":{"DataType":"Number","StringValue":"nan?"}}}`},
		{"SendMessageBatch", `{"QueueUrl":"http://h/000000000000/q","Entries":[{"Id":"a"},{"Id":"a"}]}`},
		{"ReceiveMessage", `{"QueueUrl":"http://h/000000000000/q","MaxNumberOfMessages":11,"WaitTimeSeconds":-1}`},
		{"DeleteMessage", `{"QueueUrl":"http://h/000000000000/q","ReceiptHandle":"JEpTLkFDSy4uLg"}`},
		{"ChangeMessageVisibility", `{"QueueUrl":"%zz","ReceiptHandle":"x","VisibilityTimeout":99999}`},
		{"GetQueueAttributes", `{"QueueUrl":"http://h/000000000000/q","AttributeNames":["Nope"]}`},
		{"ListQueues", `{"MaxResults":0,"NextToken":"!!"}`},
		{"Query", `Action=SendMessage&QueueUrl=http://h/000000000000/q&MessageBody=x&MessageAttribute.1.Name=a&MessageAttribute.1.Value.BinaryValue=%%`},
	} {
		f.Add(seed.op, seed.body)
	}
	bb, err := backbone.Start(backbone.Config{DataDir: f.TempDir(), Port: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(bb.Close)
	svc, err := sqs.New(context.Background(), sqs.Config{JetStream: bb.JetStream(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { svc.Close(context.Background()) })
	h, err := sqsapi.New(sqsapi.Config{Queues: svc, DefaultAccount: account, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := svc.CreateQueue(context.Background(), account, "q", nil, nil); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, op, body string) {
		var req *http.Request
		if op == "Query" {
			req = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
			req.Header.Set("X-Amz-Target", "AmazonSQS."+op)
			req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		}
		// Long polls (asked for, or a queue's ReceiveMessageWaitTimeSeconds
		// an earlier input set) make the fuzzer slow, not wiser.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req.WithContext(ctx))
		if w.Code >= 500 && ctx.Err() == nil { // a request cut short has no reader

			t.Fatalf("%s %q: %d %s", op, body, w.Code, w.Body.String())
		}
	})
}
