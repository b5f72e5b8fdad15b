package sqsapi

import (
	"net/url"
	"testing"
)

// FuzzDecodeQuery feeds arbitrary forms to the query protocol's decoder:
// it must never panic, and integers that are not integers are refused.
func FuzzDecodeQuery(f *testing.F) {
	f.Add("Action=SendMessageBatch&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=x&SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=n&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=Binary&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.BinaryValue=AQI=")
	f.Add("Action=CreateQueue&QueueName=q&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=5&Tag.1.Key=k&Tag.1.Value=v")
	f.Add("Action=ReceiveMessage&MaxNumberOfMessages=x&AttributeName.1=All&MessageAttributeName.2=.*")
	f.Add("Attribute.0.Name=a&Attribute.-1.Value=b&Attribute..Name=c&MessageAttribute.1.Value.BinaryValue=%%%")
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		in, err := decodeQuery(form)
		if err == nil && form.Has("MaxNumberOfMessages") && in.MaxNumberOfMessages == nil {
			t.Fatalf("MaxNumberOfMessages %q decoded to nothing without an error", form.Get("MaxNumberOfMessages"))
		}
	})
}

func TestDecodeQueryShapes(t *testing.T) {
	form, _ := url.ParseQuery("Action=SendMessage&QueueUrl=http://h/000000000000/q&MessageBody=b&DelaySeconds=3" +
		"&MessageAttribute.2.Name=z&MessageAttribute.2.Value.DataType=String&MessageAttribute.2.Value.StringValue=v" +
		"&MessageAttribute.1.Name=a&MessageAttribute.1.Value.DataType=Binary&MessageAttribute.1.Value.BinaryValue=AQI%3D" +
		"&AttributeName.2=SentTimestamp&AttributeName.1=All")
	in, err := decodeQuery(form)
	if err != nil {
		t.Fatal(err)
	}
	if *in.MessageBody != "b" || *in.DelaySeconds != 3 || in.QueueUrl != "http://h/000000000000/q" {
		t.Fatalf("scalars: %+v", in)
	}
	if len(in.AttributeNames) != 2 || in.AttributeNames[0] != "All" {
		t.Fatalf("AttributeNames in index order: %v", in.AttributeNames)
	}
	if a := in.MessageAttributes["a"]; string(a.BinaryValue) != "\x01\x02" || a.DataType != "Binary" {
		t.Fatalf("binary attribute: %+v", a)
	}
	if z := in.MessageAttributes["z"]; *z.StringValue != "v" {
		t.Fatalf("string attribute: %+v", z)
	}
	if _, err := decodeQuery(url.Values{"WaitTimeSeconds": {"soon"}}); err == nil {
		t.Fatal("a non-integer WaitTimeSeconds was accepted")
	}
}
