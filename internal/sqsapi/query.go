package sqsapi

import (
	"encoding/base64"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/sqs"
)

// decodeQuery reads the query protocol's form (Action=…&QueueUrl=…,
// flattened lists and maps numbered from 1) into the JSON protocol's
// shape.
func decodeQuery(form url.Values) (input, error) {
	var in input
	var err error
	in.QueueUrl = form.Get("QueueUrl")
	in.QueueName = form.Get("QueueName")
	in.QueueNamePrefix = form.Get("QueueNamePrefix")
	in.QueueOwnerAWSAccountId = form.Get("QueueOwnerAWSAccountId")
	in.NextToken = form.Get("NextToken")
	in.ReceiptHandle = form.Get("ReceiptHandle")
	if form.Has("MessageBody") {
		b := form.Get("MessageBody")
		in.MessageBody = &b
	}
	for name, dst := range map[string]**int{
		"MaxResults": &in.MaxResults, "DelaySeconds": &in.DelaySeconds, "MaxNumberOfMessages": &in.MaxNumberOfMessages,
		"VisibilityTimeout": &in.VisibilityTimeout, "WaitTimeSeconds": &in.WaitTimeSeconds,
	} {
		if *dst, err = intParam(form, name); err != nil {
			return in, err
		}
	}
	in.Attributes = pairs(form, "Attribute", "Name", "Value")
	in.Tags = pairs(form, "Tag", "Key", "Value")
	in.AttributeNames = list(form, "AttributeName")
	in.MessageSystemAttributeNames = list(form, "MessageSystemAttributeName")
	in.MessageAttributeNames = list(form, "MessageAttributeName")
	if in.MessageAttributes, err = messageAttributes(form, "MessageAttribute"); err != nil {
		return in, err
	}
	for _, prefix := range []string{"SendMessageBatchRequestEntry", "DeleteMessageBatchRequestEntry", "ChangeMessageVisibilityBatchRequestEntry"} {
		for _, sub := range indexed(form, prefix) {
			e := entry{Id: sub.Get("Id"), ReceiptHandle: sub.Get("ReceiptHandle")}
			if sub.Has("MessageBody") {
				b := sub.Get("MessageBody")
				e.MessageBody = &b
			}
			if e.DelaySeconds, err = intParam(sub, "DelaySeconds"); err != nil {
				return in, err
			}
			if e.VisibilityTimeout, err = intParam(sub, "VisibilityTimeout"); err != nil {
				return in, err
			}
			if e.MessageAttributes, err = messageAttributes(sub, "MessageAttribute"); err != nil {
				return in, err
			}
			in.Entries = append(in.Entries, e)
		}
	}
	return in, nil
}

func intParam(form url.Values, name string) (*int, error) {
	if !form.Has(name) {
		return nil, nil
	}
	n, err := strconv.Atoi(form.Get(name))
	if err != nil {
		return nil, sqs.Errorf(sqs.InvalidParameterValue, "Value %s for parameter %s is invalid. Reason: must be an integer.", form.Get(name), name)
	}
	return &n, nil
}

// indexed returns, in index order, the members of the flattened list
// prefix.1.…, prefix.2.…: for each, the form of the rest of the keys.
func indexed(form url.Values, prefix string) []url.Values {
	byIndex := map[int]url.Values{}
	for k, v := range form {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		num, sub, _ := strings.Cut(rest, ".")
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 {
			continue
		}
		if byIndex[n] == nil {
			byIndex[n] = url.Values{}
		}
		byIndex[n][sub] = v
	}
	idx := make([]int, 0, len(byIndex))
	for n := range byIndex {
		idx = append(idx, n)
	}
	sort.Ints(idx)
	out := make([]url.Values, 0, len(idx))
	for _, n := range idx {
		out = append(out, byIndex[n])
	}
	return out
}

func list(form url.Values, prefix string) []string {
	var out []string
	for _, sub := range indexed(form, prefix) {
		out = append(out, sub.Get(""))
	}
	return out
}

func pairs(form url.Values, prefix, k, v string) map[string]string {
	var out map[string]string
	for _, sub := range indexed(form, prefix) {
		if out == nil {
			out = map[string]string{}
		}
		out[sub.Get(k)] = sub.Get(v)
	}
	return out
}

func messageAttributes(form url.Values, prefix string) (map[string]sqs.MessageAttributeValue, error) {
	var out map[string]sqs.MessageAttributeValue
	for _, sub := range indexed(form, prefix) {
		if out == nil {
			out = map[string]sqs.MessageAttributeValue{}
		}
		a := sqs.MessageAttributeValue{DataType: sub.Get("Value.DataType")}
		if sub.Has("Value.StringValue") {
			s := sub.Get("Value.StringValue")
			a.StringValue = &s
		}
		if sub.Has("Value.BinaryValue") {
			b, err := base64.StdEncoding.DecodeString(sub.Get("Value.BinaryValue"))
			if err != nil {
				return nil, sqs.Errorf(sqs.InvalidParameterValue, "The binary value of message attribute '%s' is not valid base64.", sub.Get("Name"))
			}
			a.BinaryValue = b
		}
		out[sub.Get("Name")] = a
	}
	return out, nil
}
