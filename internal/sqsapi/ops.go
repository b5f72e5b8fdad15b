package sqsapi

import (
	"encoding/base64"
	"regexp"
	"strings"
	"time"

	"github.com/flintdev/flint/internal/sqs"
)

// ops is the API's operation table: name → implementation. A nil result
// means an operation without output.
var ops = map[string]func(*call) (any, error){
	"CreateQueue":                  (*call).createQueue,
	"GetQueueUrl":                  (*call).getQueueURL,
	"ListQueues":                   (*call).listQueues,
	"GetQueueAttributes":           (*call).getQueueAttributes,
	"SetQueueAttributes":           (*call).setQueueAttributes,
	"DeleteQueue":                  (*call).deleteQueue,
	"PurgeQueue":                   (*call).purgeQueue,
	"SendMessage":                  (*call).sendMessage,
	"SendMessageBatch":             (*call).sendMessageBatch,
	"ReceiveMessage":               (*call).receiveMessage,
	"DeleteMessage":                (*call).deleteMessage,
	"DeleteMessageBatch":           (*call).deleteMessageBatch,
	"ChangeMessageVisibility":      (*call).changeMessageVisibility,
	"ChangeMessageVisibilityBatch": (*call).changeMessageVisibilityBatch,
	"ListQueueTags":                (*call).listQueueTags,
}

func (c *call) createQueue() (any, error) {
	if c.in.QueueName == "" {
		return nil, sqs.Errorf(sqs.MissingParameter, "The request must contain the parameter QueueName.")
	}
	q, err := c.h.cfg.Queues.CreateQueue(c.ctx, c.account, c.in.QueueName, c.in.Attributes, c.in.Tags)
	if err != nil {
		return nil, err
	}
	return queueURLResult{QueueUrl: c.queueURL(q.Name)}, nil
}

func (c *call) getQueueURL() (any, error) {
	if c.in.QueueName == "" {
		return nil, sqs.Errorf(sqs.MissingParameter, "The request must contain the parameter QueueName.")
	}
	if o := c.in.QueueOwnerAWSAccountId; o != "" && o != c.account {
		return nil, sqs.Errorf(sqs.QueueDoesNotExist, "The specified queue does not exist.")
	}
	q, err := c.h.cfg.Queues.GetQueue(c.ctx, c.account, c.in.QueueName)
	if err != nil {
		return nil, err
	}
	return queueURLResult{QueueUrl: c.queueURL(q.Name)}, nil
}

func (c *call) listQueues() (any, error) {
	names, err := c.h.cfg.Queues.ListQueues(c.ctx, c.account, c.in.QueueNamePrefix)
	if err != nil {
		return nil, err
	}
	limit := 1000
	if c.in.MaxResults != nil {
		if *c.in.MaxResults < 1 || *c.in.MaxResults > 1000 {
			return nil, sqs.Errorf(sqs.InvalidParameterValue, "Value %d for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000.", *c.in.MaxResults)
		}
		limit = *c.in.MaxResults
	}
	if c.in.NextToken != "" {
		after, err := base64.RawURLEncoding.DecodeString(c.in.NextToken)
		if err != nil {
			return nil, sqs.Errorf(sqs.InvalidParameterValue, "Invalid NextToken value.")
		}
		for len(names) > 0 && names[0] <= string(after) {
			names = names[1:]
		}
	}
	var res listQueuesResult
	for i, n := range names {
		if i == limit {
			if c.in.MaxResults != nil {
				res.NextToken = base64.RawURLEncoding.EncodeToString([]byte(names[i-1]))
			}
			break
		}
		res.QueueUrls = append(res.QueueUrls, c.queueURL(n))
	}
	return res, nil
}

func (c *call) getQueueAttributes() (any, error) {
	name, err := c.queue()
	if err != nil {
		return nil, err
	}
	q, err := c.h.cfg.Queues.GetQueue(c.ctx, c.account, name)
	if err != nil {
		return nil, err
	}
	for _, n := range c.in.AttributeNames {
		if !sqs.KnownAttribute(n) {
			return nil, sqs.Errorf(sqs.InvalidAttributeName, "Unknown Attribute %s.", n)
		}
	}
	all, err := c.h.cfg.Queues.Attributes(c.ctx, q)
	if err != nil {
		return nil, err
	}
	res := attributesResult{Attributes: attrMap{}}
	for _, n := range c.in.AttributeNames {
		if n == "All" {
			res.Attributes = all
			break
		}
		if v, ok := all[n]; ok {
			res.Attributes[n] = v
		}
	}
	return res, nil
}

func (c *call) setQueueAttributes() (any, error) {
	name, err := c.queue()
	if err != nil {
		return nil, err
	}
	return nil, c.h.cfg.Queues.SetAttributes(c.ctx, c.account, name, c.in.Attributes)
}

func (c *call) deleteQueue() (any, error) {
	name, err := c.queue()
	if err != nil {
		return nil, err
	}
	return nil, c.h.cfg.Queues.DeleteQueue(c.ctx, c.account, name)
}

func (c *call) purgeQueue() (any, error) {
	name, err := c.queue()
	if err != nil {
		return nil, err
	}
	return nil, c.h.cfg.Queues.PurgeQueue(c.ctx, c.account, name)
}

func (c *call) listQueueTags() (any, error) {
	name, err := c.queue()
	if err != nil {
		return nil, err
	}
	q, err := c.h.cfg.Queues.GetQueue(c.ctx, c.account, name)
	if err != nil {
		return nil, err
	}
	return tagsResult{Tags: q.Tags}, nil
}

func (c *call) sendMessage() (any, error) {
	name, err := c.queue()
	if err != nil {
		return nil, err
	}
	if c.in.MessageBody == nil {
		return nil, sqs.Errorf(sqs.MissingParameter, "The request must contain the parameter MessageBody.")
	}
	out, err := c.h.cfg.Queues.Send(c.ctx, c.account, name, sqs.SendInput{
		Body: *c.in.MessageBody, Attributes: c.in.MessageAttributes, DelaySeconds: c.in.DelaySeconds, SenderID: c.sender(),
	})
	if err != nil {
		return nil, err
	}
	return sendResult{MessageId: out.MessageID, MD5OfMessageBody: out.MD5OfMessageBody, MD5OfMessageAttributes: out.MD5OfMessageAttributes}, nil
}

var batchID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// checkEntries validates a batch's size and ids as SQS does.
func (c *call) checkEntries() error {
	if len(c.in.Entries) == 0 {
		return sqs.Errorf(sqs.EmptyBatchRequest, "There should be at least one %sRequestEntry in the request.", c.op)
	}
	if len(c.in.Entries) > sqs.MaxBatch {
		return sqs.Errorf(sqs.TooManyEntriesInBatchRequest, "Maximum number of entries per request are 10. You have sent %d.", len(c.in.Entries))
	}
	seen := map[string]bool{}
	size := 0
	for _, e := range c.in.Entries {
		if !batchID.MatchString(e.Id) {
			return sqs.Errorf(sqs.InvalidBatchEntryId, "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")
		}
		if seen[e.Id] {
			return sqs.Errorf(sqs.BatchEntryIdsNotDistinct, "Id %s repeated.", e.Id)
		}
		seen[e.Id] = true
		if e.MessageBody != nil {
			size += len(*e.MessageBody)
		}
	}
	if size > 262144 {
		return sqs.Errorf(sqs.BatchRequestTooLong, "Batch requests cannot be longer than 262144 bytes. You have sent %d bytes.", size)
	}
	return nil
}

func entryError(id string, err error) batchError {
	e := sqs.AsError(err)
	return batchError{Id: id, SenderFault: e.Sender(), Code: e.QueryCode(), Message: e.Message}
}

// eachEntry checks a batch request (its queue and entries) and runs do on
// every entry in order. A server fault (5xx) ends the whole call with that
// error; any other error fails its entry alone. ok holds the results of the
// entries that succeeded, failed the others; both are non-nil.
func eachEntry[T any](c *call, do func(queue string, e entry) (T, error)) (ok []T, failed []batchError, err error) {
	name, err := c.queue()
	if err != nil {
		return nil, nil, err
	}
	if err := c.checkEntries(); err != nil {
		return nil, nil, err
	}
	if _, err := c.h.cfg.Queues.GetQueue(c.ctx, c.account, name); err != nil {
		return nil, nil, err
	}
	ok, failed = []T{}, []batchError{}
	for _, e := range c.in.Entries {
		r, err := do(name, e)
		if err != nil {
			if sqs.AsError(err).Status >= 500 {
				return nil, nil, err
			}
			failed = append(failed, entryError(e.Id, err))
			continue
		}
		ok = append(ok, r)
	}
	return ok, failed, nil
}

func (c *call) sendMessageBatch() (any, error) {
	ok, failed, err := eachEntry(c, func(queue string, e entry) (sendBatchEntry, error) {
		if e.MessageBody == nil {
			return sendBatchEntry{}, sqs.Errorf(sqs.MissingParameter, "The request must contain the parameter MessageBody.")
		}
		out, err := c.h.cfg.Queues.Send(c.ctx, c.account, queue, sqs.SendInput{
			Body: *e.MessageBody, Attributes: e.MessageAttributes, DelaySeconds: e.DelaySeconds, SenderID: c.sender(),
		})
		if err != nil {
			return sendBatchEntry{}, err
		}
		return sendBatchEntry{Id: e.Id, sendResult: sendResult{
			MessageId: out.MessageID, MD5OfMessageBody: out.MD5OfMessageBody, MD5OfMessageAttributes: out.MD5OfMessageAttributes}}, nil
	})
	if err != nil {
		return nil, err
	}
	return sendBatchResult{Successful: ok, Failed: failed}, nil
}

func (c *call) receiveMessage() (any, error) {
	name, err := c.queue()
	if err != nil {
		return nil, err
	}
	in := sqs.ReceiveInput{Max: 1, Visibility: c.in.VisibilityTimeout}
	if c.in.MaxNumberOfMessages != nil {
		in.Max = *c.in.MaxNumberOfMessages
	}
	if c.in.WaitTimeSeconds != nil {
		d := time.Duration(*c.in.WaitTimeSeconds) * time.Second
		in.Wait = &d
	}
	msgs, err := c.h.cfg.Queues.Receive(c.ctx, c.account, name, in)
	if err != nil {
		return nil, err
	}
	sysNames := append(append([]string{}, c.in.AttributeNames...), c.in.MessageSystemAttributeNames...)
	res := receiveResult{}
	for _, m := range msgs {
		out := message{MessageId: m.MessageID, ReceiptHandle: m.ReceiptHandle, MD5OfBody: m.MD5OfBody, Body: m.Body}
		out.Attributes = pick(m.Attributes, sysNames)
		out.MessageAttributes = pickAttrs(m.MessageAttributes, c.in.MessageAttributeNames)
		out.MD5OfMessageAttributes = sqs.AttributesMD5(out.MessageAttributes)
		res.Messages = append(res.Messages, out)
	}
	return res, nil
}

// pick returns the system attributes names asks for ("All" for every one).
func pick(all map[string]string, names []string) attrMap {
	var out attrMap
	for _, n := range names {
		if n == "All" {
			return all
		}
		if v, ok := all[n]; ok {
			if out == nil {
				out = attrMap{}
			}
			out[n] = v
		}
	}
	return out
}

// pickAttrs returns the message attributes names asks for: "All" or
// ".*" for every one, "prefix.*" for those starting with prefix.
func pickAttrs(all map[string]sqs.MessageAttributeValue, names []string) msgAttrMap {
	var out msgAttrMap
	for k, v := range all {
		for _, n := range names {
			if n == "All" || n == ".*" || n == k || (strings.HasSuffix(n, ".*") && strings.HasPrefix(k, strings.TrimSuffix(n, "*"))) {
				if out == nil {
					out = msgAttrMap{}
				}
				out[k] = v
				break
			}
		}
	}
	return out
}

func (c *call) deleteMessage() (any, error) {
	name, err := c.queue()
	if err != nil {
		return nil, err
	}
	if c.in.ReceiptHandle == "" {
		return nil, sqs.Errorf(sqs.MissingParameter, "The request must contain the parameter ReceiptHandle.")
	}
	return nil, c.h.cfg.Queues.DeleteMessage(c.ctx, c.account, name, c.in.ReceiptHandle)
}

func (c *call) deleteMessageBatch() (any, error) {
	ok, failed, err := eachEntry(c, func(queue string, e entry) (idEntry, error) {
		return idEntry{Id: e.Id}, c.h.cfg.Queues.DeleteMessage(c.ctx, c.account, queue, e.ReceiptHandle)
	})
	if err != nil {
		return nil, err
	}
	return deleteBatchResult{Successful: ok, Failed: failed}, nil
}

func (c *call) changeMessageVisibility() (any, error) {
	name, err := c.queue()
	if err != nil {
		return nil, err
	}
	if c.in.ReceiptHandle == "" {
		return nil, sqs.Errorf(sqs.MissingParameter, "The request must contain the parameter ReceiptHandle.")
	}
	if c.in.VisibilityTimeout == nil {
		return nil, sqs.Errorf(sqs.MissingParameter, "The request must contain the parameter VisibilityTimeout.")
	}
	return nil, c.h.cfg.Queues.ChangeVisibility(c.ctx, c.account, name, c.in.ReceiptHandle, *c.in.VisibilityTimeout)
}

func (c *call) changeMessageVisibilityBatch() (any, error) {
	ok, failed, err := eachEntry(c, func(queue string, e entry) (idEntry, error) {
		vis := 0
		if e.VisibilityTimeout != nil {
			vis = *e.VisibilityTimeout
		}
		return idEntry{Id: e.Id}, c.h.cfg.Queues.ChangeVisibility(c.ctx, c.account, queue, e.ReceiptHandle, vis)
	})
	if err != nil {
		return nil, err
	}
	return visibilityBatchResult{Successful: ok, Failed: failed}, nil
}
