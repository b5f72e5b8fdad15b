package esm

import (
	"testing"

	"github.com/flintdev/flint/internal/sqs"
)

func TestItemFailures(t *testing.T) {
	batch := []sqs.Message{{MessageID: "a"}, {MessageID: "b"}}
	for _, c := range []struct {
		payload string
		keep    []string
		ok      bool
	}{
		{``, nil, true},
		{`null`, nil, true},
		{`{}`, nil, true},
		{`{"batchItemFailures":[]}`, nil, true},
		{`{"batchItemFailures":[{"itemIdentifier":"b"}]}`, []string{"b"}, true},
		{`"done"`, nil, true},
		{`{"batchItemFailures":[{"itemIdentifier":"zzz"}]}`, nil, false}, // not in the batch
		{`{"batchItemFailures":[{"itemIdentifier":null}]}`, nil, false},
		{`{"batchItemFailures":[{}]}`, nil, false},
		{`{"batchItemFailures":"b"}`, nil, false},
		{`not json`, nil, false},
	} {
		keep, ok := itemFailures([]byte(c.payload), batch)
		if ok != c.ok {
			t.Errorf("%s: ok %v, want %v", c.payload, ok, c.ok)
			continue
		}
		if ok && len(keep) != len(c.keep) {
			t.Errorf("%s: keep %v, want %v", c.payload, keep, c.keep)
		}
		for _, id := range c.keep {
			if !keep[id] {
				t.Errorf("%s: %s not kept", c.payload, id)
			}
		}
	}
}

func TestRequestValidation(t *testing.T) {
	i := func(n int) *int { return &n }
	for _, c := range []struct {
		name string
		req  request
		ok   bool
	}{
		{"defaults", request{}, true},
		{"batch 10000 with a window", request{BatchSize: i(10000), MaximumBatchingWindowInSeconds: i(5)}, true},
		{"batch 11 without a window", request{BatchSize: i(11)}, false},
		{"batch 0", request{BatchSize: i(0)}, false},
		{"window 301", request{MaximumBatchingWindowInSeconds: i(301)}, false},
		{"concurrency 1", request{ScalingConfig: &ScalingConfig{MaximumConcurrency: 1}}, false},
		{"concurrency 2", request{ScalingConfig: &ScalingConfig{MaximumConcurrency: 2}}, true},
		{"response type", request{FunctionResponseTypes: &[]string{"Other"}}, false},
	} {
		m := &Mapping{BatchSize: 10}
		if err := c.req.apply(m); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestEventShape(t *testing.T) {
	v := "x"
	ev := Event("arn:aws:sqs:us-east-1:000000000000:q", "us-east-1", []sqs.Message{{
		MessageID: "id", ReceiptHandle: "h", Body: "b", MD5OfBody: sqs.MD5Hex("b"),
		Attributes:        map[string]string{"ApproximateReceiveCount": "1"},
		MessageAttributes: map[string]sqs.MessageAttributeValue{"k": {DataType: "String", StringValue: &v}},
	}})
	want := `{"Records":[{"messageId":"id","receiptHandle":"h","body":"b","attributes":{"ApproximateReceiveCount":"1"},` +
		`"messageAttributes":{"k":{"stringValue":"x","stringListValues":[],"binaryListValues":[],"dataType":"String"}},` +
		`"md5OfMessageAttributes":"` + sqs.AttributesMD5(map[string]sqs.MessageAttributeValue{"k": {DataType: "String", StringValue: &v}}) + `",` +
		`"md5OfBody":"92eb5ffee6ae2fec3ad71c777531578f","eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:000000000000:q","awsRegion":"us-east-1"}]}`
	if string(ev) != want {
		t.Fatalf("event\n got %s\nwant %s", ev, want)
	}
}
